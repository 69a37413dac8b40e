//! Routing: which records this relay delivers. Fan-out to several targets is
//! Kafka-native — one consumer group and one dead-letter topic per target,
//! each relay reading the same topic — and a relay may take only part of it
//! (e.g. only SMS, or a set of campaign groups). Records it skips are
//! finished at once: committed like delivered ones, never sent, never
//! dead-lettered.
//!
//! Pure: matches a parsed event against the `[filter]` section.

use serde::{Deserialize, Serialize};

use cpn_schema::ContactProcessed;

/// `[filter]`: every list that is not empty must match (AND across lists,
/// OR within one). An empty section delivers everything.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// `GSW_CONTACT_MEDIA_TYPE` values to deliver (`voice`, `sms`, `email`).
    #[serde(default)]
    pub media_types: Vec<String>,
    /// `GSW_CAMPAIGN_GROUP_NAME` values to deliver.
    #[serde(default)]
    pub campaign_groups: Vec<String>,
    /// `GSW_CALLING_LIST` values to deliver.
    #[serde(default)]
    pub calling_lists: Vec<String>,
}

impl FilterConfig {
    /// Whether this relay delivers `event`.
    pub fn accepts(&self, event: &ContactProcessed) -> bool {
        let any = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        any(&self.media_types, event.media_type.as_str())
            && any(&self.campaign_groups, &event.campaign_group_name)
            && any(&self.calling_lists, &event.calling_list)
    }

    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.media_types.is_empty()
            && self.campaign_groups.is_empty()
            && self.calling_lists.is_empty()
    }

    /// Problems of this section, with key paths under `filter`.
    pub fn problems(&self) -> Vec<crate::config::problem::ConfigProblem> {
        self.media_types
            .iter()
            .filter(|m| !matches!(m.as_str(), "voice" | "sms" | "email"))
            .map(|m| crate::config::problem::ConfigProblem {
                path: "filter.media_types".into(),
                problem: format!("{m:?} is not one of \"voice\", \"sms\", \"email\""),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(media: &str, group: &str, list: &str) -> ContactProcessed {
        let body = format!(
            r#"{{"GSW_MESSAGE":"ContactProcessed","GSW_MESSAGE_GUID":"0f8b7e3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
            "GSW_TIMESTAMP":"1764064800.123","GSW_CALL_ATTEMPT_GUID":"0f8b7e3a-1c2d-4e5f-8a9b-0c1d2e3f4a5c",
            "GSW_PHONE":"+15555550100","GSW_PHONE_TYPE":4,"GSW_CHAIN_ID":1,"GSW_CHAIN_N":0,"GSW_RECORD_HANDLE":1,
            "GSW_REASON":1,"GSW_CALL_RESULT":33,"GSW_CAMPAIGN_NAME":"c","GSW_CONTACT_MEDIA_TYPE":"{media}",
            "GSW_CALLING_LIST":"{list}","GSW_CAMPAIGN_GROUP_NAME":"{group}",
            "GSW_CAMPAIGN_GROUP_GUID":"0f8b7e3a-1c2d-4e5f-8a9b-0c1d2e3f4a5d","GSW_GROUP_NAME":"g",
            "GSW_QUEUE_NAME":"q","GSW_DIAL_MODE":1,"GSW_RECORD_TYPE":2,"GSW_RECORD_STATUS":3,
            "GSW_START_PROCESSING":"1764064790.000"}}"#
        );
        ContactProcessed::from_json(body.as_bytes()).unwrap()
    }

    #[test]
    fn lists_and_within_and_or_within() {
        let f = FilterConfig {
            media_types: vec!["sms".into(), "email".into()],
            campaign_groups: vec!["Sales".into()],
            calling_lists: vec![],
        };
        let cases = [
            (("sms", "Sales", "l1"), true),
            (("email", "Sales", "l2"), true),
            (("voice", "Sales", "l1"), false),
            (("sms", "Retention", "l1"), false),
        ];
        for ((m, g, l), want) in cases {
            assert_eq!(f.accepts(&event(m, g, l)), want, "{m} {g} {l}");
        }
    }

    #[test]
    fn an_empty_filter_takes_everything() {
        let f = FilterConfig::default();
        assert!(f.is_empty());
        assert!(f.accepts(&event("voice", "x", "y")));
    }

    #[test]
    fn unknown_media_types_are_named() {
        let f = FilterConfig {
            media_types: vec!["fax".into()],
            ..Default::default()
        };
        assert_eq!(f.problems()[0].path, "filter.media_types");
    }
}
