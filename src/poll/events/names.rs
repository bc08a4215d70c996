//! Which traces count and which images they name. The CTS docs do not say where a
//! member trace puts the image ID, so every place it may be is read: `resource_id`,
//! the request body (`images: [...]` of the v1 batch call, `image_id`) and
//! `resource_name`.

use serde_json::Value;

use crate::ids::ImageId;
use crate::ims::traces::{Trace, MAX_REQUEST_BYTES};

/// Image IDs read from one batch body at most.
const MAX_NAMED: usize = 1000;

/// An IMS trace whose name says it is about members: `addMember`, `updateMember`,
/// `deleteMember`, and any other IMS trace name containing `member` (or the
/// documented misspelling `memeber`), whatever the case. A trace without a service
/// type counts when its name does (pushed shapes may leave it out).
pub fn is_member_trace(t: &Trace) -> bool {
    let ims = t
        .service_type
        .as_deref()
        .is_none_or(|s| s.eq_ignore_ascii_case("IMS"));
    let name = t.trace_name.as_deref().unwrap_or("").to_ascii_lowercase();
    ims && (name.contains("member") || name.contains("memeber"))
}

/// The `trace_name` label: the three documented names as CTS spells them, others as
/// given (letters, digits and `_` only, at most 64 characters), so that a misspelled
/// or new name is seen but cannot grow a label without bound.
pub fn name_label(t: &Trace) -> String {
    let name = t.trace_name.as_deref().unwrap_or("");
    match name.to_ascii_lowercase().as_str() {
        "addmember" => "addMember".into(),
        "updatemember" => "updateMember".into(),
        "deletemember" | "deletememeber" => "deleteMember".into(),
        _ => name
            .chars()
            .take(64)
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect(),
    }
}

/// What a member trace names, for one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Named {
    /// Images the target monitors (a trace naming several gets them all).
    Monitored(Vec<ImageId>),
    /// Only images the target does not monitor.
    Unmonitored(Vec<ImageId>),
    /// No image at all.
    Nothing,
}

/// The images `t` names, split by `monitored`.
pub fn named(t: &Trace, monitored: impl Fn(&ImageId) -> bool) -> Named {
    let mut found: Vec<ImageId> = Vec::new();
    let mut push = |s: &str| {
        if let Ok(id) = ImageId::parse(s) {
            if !found.contains(&id) && found.len() < MAX_NAMED {
                found.push(id);
            }
        }
    };
    if let Some(id) = &t.resource_id {
        push(id);
    }
    request_images(t.request.as_ref(), &mut push);
    if let Some(name) = &t.resource_name {
        push(name);
    }
    let (mine, others): (Vec<ImageId>, Vec<ImageId>) = found.into_iter().partition(monitored);
    if !mine.is_empty() {
        Named::Monitored(mine)
    } else if !others.is_empty() {
        Named::Unmonitored(others)
    } else {
        Named::Nothing
    }
}

/// Image IDs in a request body: a JSON string as CTS lists it, or an object.
fn request_images(request: Option<&Value>, push: &mut dyn FnMut(&str)) {
    let parsed;
    let body = match request {
        Some(Value::String(s)) if s.len() <= MAX_REQUEST_BYTES => {
            parsed = serde_json::from_str::<Value>(s).ok();
            parsed.as_ref()
        }
        Some(v @ Value::Object(_)) => Some(v),
        _ => None,
    };
    let Some(Value::Object(body)) = body else {
        return;
    };
    if let Some(Value::Array(images)) = body.get("images") {
        for image in images.iter().take(MAX_NAMED) {
            if let Value::String(id) = image {
                push(id);
            }
        }
    }
    if let Some(Value::String(id)) = body.get("image_id") {
        push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
    const B: &str = "0e7e8a2c-5a8f-4b8e-9f5e-1f2e3d4c5b6a";
    const C: &str = "9d1a3e7f-2b4c-4d6e-8f0a-1b2c3d4e5f60";

    fn trace(name: &str) -> Trace {
        Trace {
            trace_id: "t".into(),
            trace_name: Some(name.into()),
            service_type: Some("IMS".into()),
            ..Trace::default()
        }
    }

    fn id(s: &str) -> ImageId {
        ImageId::parse(s).unwrap()
    }

    #[test]
    fn member_traces_by_name() {
        for name in [
            "addMember",
            "UPDATEMEMBER",
            "deleteMemeber",
            "batchAddMembers",
        ] {
            assert!(is_member_trace(&trace(name)), "{name}");
        }
        for name in ["createImage", "addTag", ""] {
            assert!(!is_member_trace(&trace(name)), "{name}");
        }
        let mut other = trace("addMember");
        other.service_type = Some("ECS".into());
        assert!(!is_member_trace(&other));
        assert_eq!(name_label(&trace("deleteMemeber")), "deleteMember");
        assert_eq!(name_label(&trace("add member<x>")), "add_member_x_");
    }

    #[test]
    fn images_from_every_place_monitored_first() {
        let monitored = |i: &ImageId| i.as_str() != C;
        let mut t = trace("addMember");
        assert_eq!(named(&t, monitored), Named::Nothing);
        t.resource_id = Some(A.into());
        assert_eq!(named(&t, monitored), Named::Monitored(vec![id(A)]));
        // The v1 batch body names two images, one of them again.
        t.request = Some(Value::String(format!(
            r#"{{"images": ["{A}", "{B}"], "projects": ["p"]}}"#
        )));
        assert_eq!(named(&t, monitored), Named::Monitored(vec![id(A), id(B)]));
        let mut u = trace("updateMember");
        u.request = Some(serde_json::json!({"image_id": C}));
        assert_eq!(named(&u, monitored), Named::Unmonitored(vec![id(C)]));
        u.resource_name = Some(B.into());
        assert_eq!(named(&u, monitored), Named::Monitored(vec![id(B)]));
        let mut v = trace("addMember");
        v.request = Some(Value::String("not json".into()));
        v.resource_id = Some("a member id, not an image".into());
        assert_eq!(named(&v, monitored), Named::Nothing);
    }
}
