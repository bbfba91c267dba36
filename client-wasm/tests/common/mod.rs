//! Shared by the browser test files: where the server is, and which browser runs the test.

/// The running server's base URL, such as `ws://127.0.0.1:3030`, baked in at compile time.
pub fn server() -> String {
    let Some(base) = option_env!("WSCLOSE_SERVER_URL") else {
        panic!(
            "WSCLOSE_SERVER_URL is not set. These tests need a running wsclose-server: run \
             `make test-browser` (or `make test-slow`), which starts one and sets it. By hand: \
             start `wsclose-server --addr 127.0.0.1:3030 --allowed-origin http://127.0.0.1:8000`, \
             then run `WASM_BINDGEN_TEST_ADDRESS=127.0.0.1:8000 \
             WSCLOSE_SERVER_URL=ws://127.0.0.1:3030 wasm-pack test --headless --chrome client-wasm`."
        )
    };
    let base = base.trim_end_matches('/');
    match base.split_once("://") {
        Some(("http", rest)) => format!("ws://{rest}"),
        Some(("https", rest)) => format!("wss://{rest}"),
        _ => base.to_owned(),
    }
}

/// `server()` plus `path`, such as `/ws/drain?push_ms=0`.
pub fn url(path: &str) -> String {
    format!("{}{path}", server())
}

/// The browser under test: `"firefox"`, `"chromium"` or `"webkit"` (WebKitGTK's MiniBrowser,
/// whose user agent reads like Safari's), from `navigator.userAgent`.
pub fn browser() -> &'static str {
    let agent = web_sys::window()
        .and_then(|window| window.navigator().user_agent().ok())
        .unwrap_or_default();
    if agent.contains("Firefox/") {
        "firefox"
    } else if agent.contains("Chrome/") {
        "chromium"
    } else if agent.contains("AppleWebKit/") {
        "webkit"
    } else {
        panic!("unknown browser: {agent}")
    }
}
