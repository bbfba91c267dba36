//! The live panel (`#live`, optional): a reconnecting [`Subscription`] to `/ws/drain`, shown
//! as text and as `data-*` attributes.

use wasm_bindgen::JsValue;
use web_sys::{Document, Element};

use super::by_id;
use super::page::Page;
use crate::subscription::{Backoff, Status, Subscription};

/// The live panel (`#live`): what the reconnecting subscription sees, as text and as
/// `data-*` attributes on `#live` for scripts and tests.
#[derive(Clone)]
pub(super) struct LivePanel {
    root: Element,
    state: Element,
    instance: Element,
    seq: Element,
    reconnects: Element,
    closes: Element,
    out_of_order: Element,
}

impl LivePanel {
    pub(super) fn find(document: &Document) -> Result<LivePanel, JsValue> {
        Ok(LivePanel {
            root: by_id(document, "live")?,
            state: by_id(document, "live-state")?,
            instance: by_id(document, "live-instance")?,
            seq: by_id(document, "live-seq")?,
            reconnects: by_id(document, "live-reconnects")?,
            closes: by_id(document, "live-closes")?,
            out_of_order: by_id(document, "live-out-of-order")?,
        })
    }

    fn show(&self, status: &Status) -> Result<(), JsValue> {
        let seq = status
            .last_seq
            .map_or("–".to_owned(), |seq| seq.to_string());
        let instance = status.instance.clone().unwrap_or_else(|| "–".to_owned());
        let closes = status
            .closes
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let fields = [
            (&self.state, "data-state", status.state.to_owned()),
            (&self.instance, "data-instance", instance),
            (&self.seq, "data-seq", seq),
            (
                &self.reconnects,
                "data-reconnects",
                status.reconnects.to_string(),
            ),
            (&self.closes, "data-closes", closes.clone()),
            (
                &self.out_of_order,
                "data-out-of-order",
                status.out_of_order.to_string(),
            ),
        ];
        for (element, attribute, value) in fields {
            let text = if value.is_empty() {
                "–"
            } else {
                value.as_str()
            };
            element.set_text_content(Some(text));
            self.root.set_attribute(attribute, &value)?;
        }
        self.root
            .set_attribute("data-instances", &status.instances.join(","))?;
        self.root
            .set_attribute("data-ticks", &status.ticks.to_string())
    }
}

impl Page {
    /// Starts the live subscription, or stops it when it runs.
    pub(super) fn toggle_subscription(&self, url: &str, live: &LivePanel, button: &Element) {
        let mut running = self.subscription.borrow_mut();
        if running.take().is_some() {
            // Dropping the subscription aborts its loop and closes its socket.
            let _ = live.root.set_attribute("data-state", "idle");
            live.state.set_text_content(Some("stopped by you"));
            button.set_text_content(Some("Subscribe"));
            return;
        }
        let panel = live.clone();
        *running = Some(Subscription::start(
            url.to_owned(),
            Backoff::default(),
            move |status| {
                if let Err(error) = panel.show(status) {
                    web_sys::console::error_2(&"wsclose live panel:".into(), &error);
                }
            },
        ));
        button.set_text_content(Some("Unsubscribe"));
    }
}
