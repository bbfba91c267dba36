//! A quiet browser tab, measured: a real browser (driven over WebDriver with fantoccini, the
//! check's own [`Driver`]) opens `new WebSocket(url)`, sends nothing, and reports its `close`
//! event (code, and time from the `open` event) or that it was still open after a hold. What
//! `wsclose-check --idle` predicts for such a tab ([`crate::idle::IdleReport::predicted_quiet_tab`])
//! is compared with it in `tests/idle_browser.rs`.

use std::time::Duration;

use anyhow::Context;
use fantoccini::wd::TimeoutConfiguration;
use serde::Deserialize;
use serde_json::json;
use wsclose_check::browser::{Browser, Driver};

use crate::idle::QuietTab;

/// What the script may take beyond the hold: the upgrade, and a loaded machine.
const SCRIPT_SLACK: Duration = Duration::from_secs(20);
/// Bound on opening the page.
const PAGE_LOAD: Duration = Duration::from_secs(20);

/// Opens `ws_url` from a page at `page_url` (its origin is the one the socket sends) and holds
/// it, sending nothing, for `hold` after the `open` event: what the `close` event said, or
/// [`QuietTab::Open`] when there was none by then.
pub async fn measure_quiet_tab(
    browser: Browser,
    page_url: &str,
    ws_url: &str,
    hold: Duration,
) -> anyhow::Result<QuietTab> {
    let driver = Driver::start(browser).await?;
    let client = driver.connect().await?;
    let result = async {
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(hold + SCRIPT_SLACK),
                Some(PAGE_LOAD),
                None,
            ))
            .await
            .context("set the WebDriver timeouts")?;
        client
            .goto(page_url)
            .await
            .with_context(|| format!("open {page_url}"))?;
        let script = r#"
            const [url, holdMs, done] = arguments;
            const ws = new WebSocket(url);
            let openedAt = null;
            ws.onopen = () => {
              openedAt = performance.now();
              setTimeout(() => done({ open: ws.readyState === WebSocket.OPEN,
                                      after_ms: performance.now() - openedAt }), holdMs);
            };
            ws.onclose = (event) => done({ open: false, code: event.code,
                                           after_ms: openedAt === null ? null : performance.now() - openedAt });
        "#;
        let answer = client
            .execute_async(script, vec![json!(ws_url), json!(hold.as_millis() as u64)])
            .await
            .context("run the quiet tab")?;
        let tab: TabAnswer = serde_json::from_value(answer.clone())
            .with_context(|| format!("the tab's answer {answer}"))?;
        match tab {
            TabAnswer { open: true, .. } => Ok(QuietTab::Open),
            TabAnswer {
                after_ms: Some(after_ms),
                code: Some(code),
                ..
            } => Ok(QuietTab::Closed { after_ms, code }),
            _ => anyhow::bail!("{ws_url} never opened in {}: {answer}", browser.name()),
        }
    }
    .await;
    let _ = client.close().await;
    drop(driver);
    result
}

/// The script's answer.
#[derive(Debug, Deserialize)]
struct TabAnswer {
    /// Still open after the hold.
    open: bool,
    /// The `close` event's code.
    code: Option<u16>,
    /// From the `open` event to the answer.
    after_ms: Option<f64>,
}
