//! The Adaptive Cards the bot sends, and the button presses it reads back.
//!
//! An approval card carries Approve and Refuse as `Action.Execute` (Teams'
//! Universal Actions: an `invoke` answered in the HTTP response with the
//! replacement card), each with an `Action.Submit` fallback for clients
//! without Universal Actions (a `message` with a `value`; the card is then
//! replaced with `PUT`). The buttons carry only the verb and the request
//! id; who pressed is the activity's validated `from`, never the card.

use serde_json::{Value, json};

/// The Adaptive Card content type.
pub const CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";
/// The longest request id read from a button.
const MAX_REQUEST_ID_CHARS: usize = 128;

/// A card as a message attachment.
pub fn attachment(card: Value) -> Value {
    json!({ "contentType": CARD_CONTENT_TYPE, "content": card })
}

fn card(body: Vec<Value>, actions: Vec<Value>) -> Value {
    let mut card = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": body,
    });
    if !actions.is_empty() {
        card["actions"] = json!(actions);
    }
    card
}

fn text_block(text: &str) -> Value {
    json!({ "type": "TextBlock", "text": text, "wrap": true })
}

fn button(title: &str, verb: &str, request_id: &str, style: &str) -> Value {
    let data = json!({ "request": request_id });
    json!({
        "type": "Action.Execute",
        "title": title,
        "verb": verb,
        "data": data,
        "style": style,
        "fallback": {
            "type": "Action.Submit",
            "title": title,
            "data": { "action": verb, "request": request_id },
        },
    })
}

/// An approval request: `text` and Approve / Refuse.
pub fn approval(text: &str, request_id: &str) -> Value {
    card(
        vec![text_block(text)],
        vec![
            button("Approve", "approve", request_id, "positive"),
            button("Refuse", "deny", request_id, "destructive"),
        ],
    )
}

/// The card that replaces an answered one: `text`, no buttons.
pub fn decided(text: &str) -> Value {
    card(vec![text_block(text)], Vec::new())
}

/// The MFA step-up: `text` and a button opening `url`.
pub fn step_up(text: &str, url: &str) -> Value {
    card(
        vec![text_block(text)],
        vec![
            json!({ "type": "Action.OpenUrl", "title": crate::outbox::STEP_UP_BUTTON, "url": url }),
        ],
    )
}

/// An `adaptiveCard/action` invoke's answer replacing the card.
pub fn invoke_card(card: Value) -> Value {
    json!({ "statusCode": 200, "type": CARD_CONTENT_TYPE, "value": card })
}

/// An `adaptiveCard/action` invoke's answer as a message.
pub fn invoke_message(text: &str) -> Value {
    json!({ "statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": text })
}

/// An Approve or Refuse press.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardAction {
    /// The approval request.
    pub request_id: String,
    /// Approve (else refuse).
    pub approve: bool,
}

impl CardAction {
    fn of(verb: Option<&str>, request: Option<&str>) -> Option<CardAction> {
        let approve = match verb? {
            "approve" => true,
            "deny" => false,
            _ => return None,
        };
        let request_id = request?;
        if request_id.is_empty() || request_id.chars().count() > MAX_REQUEST_ID_CHARS {
            return None;
        }
        Some(CardAction {
            request_id: request_id.to_owned(),
            approve,
        })
    }

    /// From an invoke's `value.action` (`Action.Execute`: `verb`,
    /// `data.request`).
    pub fn from_execute(action: &Value) -> Option<CardAction> {
        CardAction::of(
            action.get("verb").and_then(Value::as_str),
            action.pointer("/data/request").and_then(Value::as_str),
        )
    }

    /// From a message's `value` (`Action.Submit`: `action`, `request`).
    pub fn from_submit(value: &Value) -> Option<CardAction> {
        CardAction::of(
            value.get("action").and_then(Value::as_str),
            value.get("request").and_then(Value::as_str),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_button_kinds_read_back_and_nothing_else_does() {
        let card = approval("Alex asks", "req-1");
        let execute = &card["actions"][0];
        let action =
            json!({"type": "Action.Execute", "verb": execute["verb"], "data": execute["data"]});
        assert_eq!(
            CardAction::from_execute(&action),
            Some(CardAction {
                request_id: "req-1".into(),
                approve: true
            })
        );
        let submit = &card["actions"][1]["fallback"]["data"];
        assert_eq!(
            CardAction::from_submit(submit),
            Some(CardAction {
                request_id: "req-1".into(),
                approve: false
            })
        );
        assert_eq!(
            CardAction::from_submit(&json!({"action": "delete", "request": "r"})),
            None
        );
        assert_eq!(CardAction::from_submit(&json!({"action": "approve"})), None);
        assert_eq!(
            CardAction::from_submit(&json!({"action": "approve", "request": "x".repeat(200)})),
            None
        );
        assert!(decided("Approved.").get("actions").is_none());
    }
}
