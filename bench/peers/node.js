// A Node `ws` echo server, for `make bench`. Usage: node node.js ADDR (port 0 picks one).
// Prints "listening on http://IP:PORT". ws answers Close itself and then ends the socket.
const { WebSocketServer } = require('ws');

const [host, port] = process.argv[2].split(/:(?=\d+$)/);
const server = new WebSocketServer({ host, port: Number(port) });
server.on('listening', () => {
  const address = server.address();
  console.log(`listening on http://${address.address}:${address.port}`);
});
server.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
});
