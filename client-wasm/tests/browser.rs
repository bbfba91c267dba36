//! Fast headless-browser tests of the close probe against a running `wsclose-server`.
//!
//! Run by `make test-browser`, in Chromium, Firefox and WebKit. The server's base URL comes from
//! `WSCLOSE_SERVER_URL` at compile time; without it every test fails and says how to start
//! the server. The whole file stays well under wasm-bindgen-test's default 20 s budget: the
//! longest test waits 3 s.
#![cfg(target_arch = "wasm32")]

mod common;

use common::{browser, url};
use js_sys::{Object, Reflect};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};
use wsclose_client::explain::{format_ms, summary};
use wsclose_client::{
    echo, measure_close, CloseInfo, CloseOptions, CloseReport, Payload, ProbeError,
};

wasm_bindgen_test_configure!(run_in_browser);

/// A draining server answers within about a millisecond; this leaves room for a slow CI box
/// while still catching Chromium's 2 s wait for a server that keeps its TCP connection open.
const PROMPT_MS: f64 = 1_000.0;

/// Gives up on a close that should be prompt, so a regression fails fast instead of hanging.
const GIVE_UP_MS: u32 = 5_000;

/// How long the no-drain test waits to see that no `close` event comes.
const NO_DRAIN_WAIT_MS: u32 = 3_000;

async fn measure(what: &str, url: &str, options: CloseOptions) -> CloseReport {
    let report = measure_close(url, options)
        .await
        .unwrap_or_else(|error| panic!("{what}: probing {url} failed: {error}"));
    console_log!("[{}] {what}: {}", browser(), summary(&report));
    report
}

fn assert_prompt_and_clean(what: &str, report: &CloseReport, code: u16, reason: &str) {
    assert!(
        report.close.was_clean,
        "{what}: wasClean should be true: {report:?}"
    );
    assert_eq!(
        report.close.code, code,
        "{what}: echoed close code: {report:?}"
    );
    assert_eq!(
        report.close.reason, reason,
        "{what}: echoed close reason: {report:?}"
    );
    assert!(
        report.elapsed_ms < PROMPT_MS,
        "{what}: close took {}, expected under {}: {report:?}",
        format_ms(report.elapsed_ms),
        format_ms(PROMPT_MS)
    );
}

#[wasm_bindgen_test]
async fn drain_closes_cleanly_within_a_second() {
    let options = CloseOptions::default().give_up_after_ms(GIVE_UP_MS);
    let report = measure("drain", &url("/ws/drain"), options).await;
    assert_prompt_and_clean("drain", &report, 1000, "");
}

/// The first trap: the server drops the socket on the peer's Close with the reply unsent. Every
/// engine sees TCP end without a Close frame at once: 1006, not clean, in well under a second.
#[wasm_bindgen_test]
async fn break_on_close_is_1006_at_once() {
    let options = CloseOptions::default().give_up_after_ms(GIVE_UP_MS);
    let report = measure("break-on-close", &url("/ws/break-on-close"), options).await;
    assert_eq!(
        (report.close.code, report.close.was_clean),
        (wsclose_client::ABNORMAL_CLOSURE, false),
        "{report:?}"
    );
    assert!(
        report.elapsed_ms < PROMPT_MS,
        "break-on-close took {}",
        format_ms(report.elapsed_ms)
    );
}

#[wasm_bindgen_test]
async fn drain_echoes_a_custom_code_and_reason() {
    let options = CloseOptions::default()
        .with_close(4000, "wsclose test: custom")
        .give_up_after_ms(GIVE_UP_MS);
    let report = measure("drain 4000", &url("/ws/drain"), options).await;
    assert_prompt_and_clean("drain 4000", &report, 4000, "wsclose test: custom");
}

/// With a 60 s push interval the server's writer sleeps the whole time. If closing only
/// stopped the reader, the TCP connection would stay open and Chromium would wait 2 s for the
/// server to hang up. The close must still be prompt.
#[wasm_bindgen_test]
async fn drain_closes_promptly_while_the_writer_sleeps() {
    let options = CloseOptions::default()
        .with_close(4001, "writer asleep")
        .give_up_after_ms(GIVE_UP_MS);
    let report = measure(
        "drain push_ms=60000",
        &url("/ws/drain?push_ms=60000"),
        options,
    )
    .await;
    assert_prompt_and_clean("drain push_ms=60000", &report, 4001, "writer asleep");
}

#[wasm_bindgen_test]
async fn drain_counts_ticks_and_closes_promptly_mid_stream() {
    let options = CloseOptions::default()
        .wait_for_messages(3)
        .give_up_after_ms(GIVE_UP_MS);
    let report = measure(
        "drain push_ms=20, 3 ticks",
        &url("/ws/drain?push_ms=20"),
        options,
    )
    .await;
    assert_eq!(report.messages_received, 3, "{report:?}");
    assert_prompt_and_clean("drain push_ms=20", &report, 1000, "");
}

#[wasm_bindgen_test]
async fn echo_returns_text_unchanged() {
    assert_echoed(Payload::Text("hello, wsclose ✓ {\"seq\":0}".to_owned())).await;
}

#[wasm_bindgen_test]
async fn echo_returns_binary_unchanged() {
    assert_echoed(Payload::Binary((0..=255).chain((0..=255).rev()).collect())).await;
}

/// Sends `sent` to `/ws/echo` and asserts that the same message came back.
async fn assert_echoed(sent: Payload) {
    let got = echo(&url("/ws/echo"), &sent, GIVE_UP_MS)
        .await
        .unwrap_or_else(|error| panic!("echo {sent:?}: {error}"));
    assert_eq!(got, sent);
}

/// The bug: the server never reads, so the Close frame is never answered and no `close`
/// event arrives. The full wait (60 s in Chromium, 20 s in Firefox) is `tests/slow.rs`.
#[wasm_bindgen_test]
async fn no_drain_leaves_close_unanswered() {
    let options = CloseOptions::default().give_up_after_ms(NO_DRAIN_WAIT_MS);
    match measure_close(&url("/ws/no-drain"), options).await {
        Err(ProbeError::CloseTimeout { elapsed_ms, .. }) => {
            console_log!(
                "[{}] no-drain: no close event {} after close() (expected: nobody reads the Close frame)",
                browser(),
                format_ms(elapsed_ms)
            );
            assert!(
                elapsed_ms >= f64::from(NO_DRAIN_WAIT_MS) - 50.0,
                "gave up too early: {elapsed_ms} ms"
            );
        }
        Ok(report) => panic!(
            "no-drain: the close event fired after {} ({report:?}); the server must not answer",
            format_ms(report.elapsed_ms)
        ),
        Err(error) => panic!("no-drain: probe failed: {error}"),
    }
}

#[wasm_bindgen_test]
async fn a_code_the_browser_forbids_is_rejected() {
    let options = CloseOptions::default().with_close(1001, "");
    match measure_close(&url("/ws/drain"), options).await {
        Err(ProbeError::Rejected(why)) => {
            console_log!("[{}] close(1001) rejected: {why}", browser())
        }
        other => panic!("close(1001) should throw in the browser, got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn a_refused_connection_is_reported() {
    // A port that was free a moment ago (browsers block well-known ports such as 9 before any
    // TCP happens, so those test nothing).
    let port = free_port();
    let options = CloseOptions::default();
    match measure_close(&format!("ws://127.0.0.1:{port}/ws/drain"), options).await {
        Err(ProbeError::ConnectFailed(close)) => assert_eq!(close.code, 1006),
        other => panic!("expected ConnectFailed on port {port}, got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn a_setup_that_never_completes_times_out() {
    // push_ms=0: no tick will ever come, so waiting for one must give up.
    let options = CloseOptions {
        wait_for_messages: 1,
        setup_timeout_ms: 300,
        ..CloseOptions::default()
    };
    match measure_close(&url("/ws/drain?push_ms=0"), options).await {
        Err(ProbeError::SetupTimeout {
            after_ms,
            messages_received,
        }) => {
            assert_eq!((after_ms, messages_received), (300, 0));
        }
        other => panic!("expected SetupTimeout, got {other:?}"),
    }
}

/// The server closes first (1009 for an oversized message); closing afterwards is an error
/// that says so, never a report with a negative time.
#[wasm_bindgen_test]
async fn closing_after_the_server_closed_is_an_error_not_a_negative_time() {
    let probe = wsclose_client::Probe::connect(&url("/ws/echo"), GIVE_UP_MS)
        .await
        .expect("connect");
    probe
        .send(&Payload::Binary(vec![0; 70_000]))
        .expect("send an oversized message");
    gloo_timers::future::TimeoutFuture::new(500).await;
    match probe.close(1000, "") {
        Err(ProbeError::ClosedByServer { close, .. }) => assert_eq!(close.code, 1009),
        Err(other) => panic!("expected ClosedByServer, got {other}"),
        Ok(closing) => match closing.wait(Some(GIVE_UP_MS)).await {
            Err(ProbeError::ClosedByServer { close, .. }) => assert_eq!(close.code, 1009),
            other => panic!("expected ClosedByServer, got {other:?}"),
        },
    }
}

/// A close timeout beyond what a browser timer holds must not give up at once.
#[wasm_bindgen_test]
async fn a_huge_close_timeout_still_waits() {
    let options = CloseOptions::default().give_up_after_ms(u32::MAX);
    let target = url("/ws/no-drain");
    let probe = measure_close(&target, options);
    let watch = gloo_timers::future::TimeoutFuture::new(1_500);
    futures::pin_mut!(probe);
    match futures::future::select(probe, watch).await {
        futures::future::Either::Right(((), _)) => {} // still waiting: right
        futures::future::Either::Left((result, _)) => {
            panic!("closeTimeoutMs = u32::MAX ended within 1.5 s: {result:?}")
        }
    }
}

/// A misspelled option is an error, not silently ignored.
#[wasm_bindgen_test]
async fn misspelled_options_are_rejected() {
    let options = Object::new();
    set(&options, "closeTimeoutMS", JsValue::from(10));
    let rejected = wsclose_client::measure_close_js(url("/ws/drain"), options.into())
        .await
        .expect_err("an unknown option must reject");
    let message = get(&rejected, "message").as_string().unwrap_or_default();
    assert!(message.contains("unknown field"), "{message}");
    assert!(message.contains("closeTimeoutMS"), "{message}");
}

/// The JavaScript export resolves with a plain camelCase object.
#[wasm_bindgen_test]
async fn measure_close_from_javascript() {
    let options = Object::new();
    set(&options, "code", JsValue::from(4002));
    set(&options, "reason", JsValue::from("from js"));
    set(&options, "closeTimeoutMs", JsValue::from(GIVE_UP_MS));
    let report = wsclose_client::measure_close_js(url("/ws/drain"), options.into())
        .await
        .unwrap_or_else(|error| panic!("measureClose rejected: {error:?}"));
    assert_eq!(get(&report, "code").as_f64(), Some(4002.0));
    assert_eq!(
        get(&report, "reason").as_string().as_deref(),
        Some("from js")
    );
    assert_eq!(get(&report, "wasClean").as_bool(), Some(true));
    let elapsed = get(&report, "elapsedMs")
        .as_f64()
        .expect("elapsedMs is a number");
    assert!(elapsed < PROMPT_MS, "elapsedMs {elapsed}");
    assert_eq!(get(&report, "messagesReceived").as_f64(), Some(0.0));

    let rejected = wsclose_client::measure_close_js(url("/ws/drain"), {
        let options = Object::new();
        set(&options, "code", JsValue::from(1001));
        options.into()
    })
    .await
    .expect_err("close(1001) must reject");
    assert_eq!(
        get(&rejected, "name").as_string().as_deref(),
        Some("ProbeError")
    );
    assert_eq!(
        get(&rejected, "kind").as_string().as_deref(),
        Some("rejected")
    );
}

/// Options objects as JavaScript writes them, right and wrong: every key, and every kind of
/// value serde-wasm-bindgen tells apart (missing, `undefined`, `null`, booleans, integers in
/// and out of range, negative and fractional numbers, `NaN`, huge and tiny ones, strings with
/// quotes and non-ASCII, arrays, byte arrays, objects, functions).
const OPTION_CASES: &str = r#"return [
  {}, { code: 1000 }, { code: 4999, reason: 'bye' }, { code: 0 }, { code: 65535 },
  { code: 65536 }, { code: 70000 }, { code: -1 }, { code: -0 }, { code: 1.5 }, { code: 1e21 },
  { code: 1.5e-7 }, { code: 2 ** 53 }, { code: NaN }, { code: Infinity }, { code: -Infinity },
  { code: '1000' }, { code: 'say "hi"\n' }, { code: 'é ✓ \u200b' }, { code: true },
  { code: null }, { code: undefined }, { code: [] }, { code: {} }, { code: new Uint8Array(2) },
  { code: new ArrayBuffer(1) }, { code: () => 1 }, { code: 10n },
  { reason: 5 }, { reason: null }, { reason: undefined }, { reason: '' }, { reason: ['x'] },
  { waitForMessages: 3 }, { waitForMessages: 4294967295 }, { waitForMessages: 4294967296 },
  { waitForMessages: -3 }, { setupTimeoutMs: 250 }, { setupTimeoutMs: 0.5 },
  { closeTimeoutMs: null }, { closeTimeoutMs: undefined }, { closeTimeoutMs: 5000 },
  { closeTimeoutMs: 'soon' }, { closeTimeoutMs: false },
  { code: 'x', reason: 5 }, { reason: 5, code: 'x' }, { code: 1000, closeTimeoutMs: -1 },
  Object.create({ code: 3000 }), [1, 2], new Date(0),
  5, 0.25, 'code', true, 10n, () => 1,
];"#;

/// `measureClose` reads its options as serde-wasm-bindgen did: the same options, or the same
/// message, for every case (serde-wasm-bindgen is the reference, called on the same value).
#[wasm_bindgen_test]
fn options_are_read_as_serde_wasm_bindgen_read_them() {
    use wsclose_client::options::{close_options, Bad};
    let cases: js_sys::Array = js_sys::Function::new_no_args(OPTION_CASES)
        .call0(&JsValue::UNDEFINED)
        .expect("the cases")
        .into();
    assert!(cases.length() > 50);
    for case in cases.iter() {
        let reference = serde_wasm_bindgen::from_value::<CloseOptions>(case.clone());
        match (close_options(&case), reference) {
            (Ok(ours), Ok(reference)) => assert_eq!(ours, reference, "{case:?}"),
            (Err(Bad::Message(ours)), Err(reference)) => {
                assert_eq!(format!("Error: {ours}"), reference.to_string(), "{case:?}")
            }
            (Err(Bad::Thrown(error)), _) => panic!("{case:?} threw {error:?}"),
            (ours, reference) => panic!(
                "{case:?}: ours {:?}, serde-wasm-bindgen {reference:?}",
                ours.map_err(|_| "an error")
            ),
        }
    }
}

/// A tick is read as serde-wasm-bindgen read it into `{ seq: u64, instance: String }`.
#[wasm_bindgen_test]
fn ticks_are_read_as_serde_wasm_bindgen_read_them() {
    #[derive(serde::Deserialize)]
    struct Tick {
        seq: u64,
        #[serde(default)]
        instance: String,
    }
    for text in [
        r#"{"seq":1,"sent_at_ms":5,"instance":"a"}"#,
        r#"{"seq":0}"#,
        r#"{"seq":-0}"#,
        r#"{"seq":9007199254740991,"instance":""}"#,
        r#"{"seq":9007199254740992}"#,
        r#"{"seq":-1}"#,
        r#"{"seq":1.5}"#,
        r#"{"seq":"1"}"#,
        r#"{"seq":null}"#,
        r#"{"instance":"a"}"#,
        r#"{"seq":2,"instance":null}"#,
        r#"{"seq":2,"instance":7}"#,
        r#"[1]"#,
        r#"5"#,
        r#"null"#,
        r#"not json"#,
    ] {
        let reference = js_sys::JSON::parse(text)
            .ok()
            .and_then(|value| serde_wasm_bindgen::from_value::<Tick>(value).ok())
            .map(|tick| (tick.seq, tick.instance));
        assert_eq!(
            wsclose_client::subscription::parse_tick(text),
            reference,
            "{text}"
        );
    }
}

/// The report and the export are the objects serde-wasm-bindgen made: the same JSON text,
/// missing values (`null`), the flattened statistics and the key order included.
#[wasm_bindgen_test]
fn results_are_the_objects_serde_wasm_bindgen_made() {
    use serde::Serialize;
    use wsclose_client::results::{BrowserInfo, Export, ExportedRun};
    let json = |value: &JsValue| String::from(js_sys::JSON::stringify(value).expect("JSON"));
    let report = CloseReport {
        elapsed_ms: 0.9,
        close: CloseInfo {
            code: 1000,
            reason: "bye \"now\" ✓".to_owned(),
            was_clean: true,
        },
        messages_received: 3,
    };
    // The close event's fields are flattened in: serde writes the report as a map, which the
    // json_compatible mode makes a plain object.
    let reference = report
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .expect("serialize");
    assert_eq!(json(&wsclose_client::js::report(&report)), json(&reference));

    let run = |number: usize, url: &str, elapsed_ms: Option<f64>, code: Option<u16>| ExportedRun {
        number,
        url: url.to_owned(),
        state: if elapsed_ms.is_some() {
            "done"
        } else {
            "error"
        },
        elapsed_ms,
        code,
        reason: code.map(|_| String::new()),
        was_clean: code.map(|code| code == 1000),
        open_ms: Some(1.25),
        protocol: Some(String::new()),
        extensions: elapsed_ms.map(|_| "permessage-deflate".to_owned()),
        error: elapsed_ms.is_none().then(|| "connectFailed: no".to_owned()),
    };
    let export = Export::new(
        "http://127.0.0.1:3030/?url=x".to_owned(),
        "2026-12-02T21:00:00.000Z".to_owned(),
        BrowserInfo::from_user_agent(
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
        ),
        vec![
            run(1, "ws://a/ws/drain", Some(1.5), Some(1000)),
            run(2, "ws://a/ws/drain", Some(0.75), Some(1000)),
            run(3, "ws://a/ws/no-drain", Some(60_001.2), Some(1006)),
            run(4, "ws://a/ws/echo", None, None),
        ],
    );
    let reference = export
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .expect("serialize");
    let ours = json(&wsclose_client::js::export(&export));
    assert!(
        ours.contains("\"medianMs\":") && ours.contains("null"),
        "{ours}"
    );
    assert_eq!(ours, json(&reference));
}

/// The chart's numbers are what `to_string` writes, from JavaScript's digits: the same text,
/// or, where `x` is exactly halfway between two shortest candidates, the other candidate of
/// the same length, which reads back as the same `x`.
#[wasm_bindgen_test]
fn shortest_is_to_string() {
    use wsclose_client::number::shortest;
    let same = |x: f64| {
        let (ours, rust) = (shortest(x), x.to_string());
        if ours == rust {
            return true;
        }
        let back: f64 = ours.parse().expect("a number");
        assert!(
            back.to_bits() == x.to_bits() && ours.len() == rust.len(),
            "{:#x}: {ours} against {rust}",
            x.to_bits()
        );
        false
    };
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut ties = 0;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        for x in [
            f64::from_bits(state),
            (state >> 11) as f64 / (1_u64 << 53) as f64 * 1_000.0,
            (state % 100_000) as f64 / 10.0,
        ] {
            ties += usize::from(!same(x));
        }
    }
    for x in [
        0.0,
        -0.0,
        1e21,
        1e-7,
        123e-9,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
    ] {
        assert!(same(x), "{x:e}");
    }
    console_log!("shortest: {ties} of 60000 were halfway ties, written as the other candidate");
    assert!(ties < 60, "{ties} differences are more than ties");
}

fn set(object: &Object, key: &str, value: JsValue) {
    Reflect::set(object, &key.into(), &value).expect("set a property");
}

fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &key.into()).expect("get a property")
}

/// A loopback port that was free when the test run started (`WSCLOSE_FREE_PORT`, set by
/// `e2e/src/bin/with-server.rs`), for a connection that must be refused.
fn free_port() -> u16 {
    option_env!("WSCLOSE_FREE_PORT")
        .and_then(|port| port.parse().ok())
        .expect("WSCLOSE_FREE_PORT is not set: run the tests through make test-browser (e2e/src/bin/with-server.rs)")
}
