//! Images other tenants share with a project (offers to it): `GET /v2/cloudimages`
//! with `__imagetype=shared&visibility=shared&member_status=<status>`, one paged
//! listing per status (the status of an offer comes from the query: the image object
//! may not carry it). A listing is all or nothing, with the member lists' integrity
//! rules: a 200 without an `images` list, a wrong type, an image ID that is not a UUID,
//! an oversized field, a marker that repeats or more than the cap fail it.

use std::collections::HashSet;

use super::client::{ApiTarget, ImsClient};
use super::error::ApiError;
use super::model::{ImageList, MAX_MEMBER_ID_BYTES};
use super::url::url;
use crate::ids::ImageId;

pub const OP_LIST_SHARED_IMAGES: &str = "list_shared_images";
/// The statuses of an offer, each listed on its own.
pub const MEMBER_STATUSES: [&str; 3] = ["pending", "accepted", "rejected"];
/// Longest image name kept (IMS allows 128 characters; room for multi-byte ones).
const MAX_NAME_BYTES: usize = 1024;

/// One image offered to the project: its ID, name and owner (the sharing tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedImage {
    pub id: String,
    pub name: String,
    pub owner: String,
}

impl ImsClient {
    /// Every image offered to the target's project with `member_status`, page after
    /// page (marker: the last image ID), at most `cap` in all.
    pub async fn list_shared_images(
        &self,
        target: &ApiTarget,
        member_status: &str,
        page_size: u32,
        cap: usize,
    ) -> Result<Vec<OfferedImage>, ApiError> {
        let op = OP_LIST_SHARED_IMAGES;
        let limit = page_size.to_string();
        let mut images: Vec<OfferedImage> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut marker: Option<String> = None;
        loop {
            let mut query = vec![
                ("__imagetype", "shared"),
                ("visibility", "shared"),
                ("member_status", member_status),
                ("limit", limit.as_str()),
            ];
            if let Some(m) = &marker {
                query.push(("marker", m.as_str()));
            }
            let url = url(op, &target.endpoint, &["v2", "cloudimages"], &query)?;
            let page: ImageList = self
                .transport()
                .get_json(op, &target.call_context(), url)
                .await?;
            let full = page.images.len() >= page_size as usize;
            for image in page.images {
                let offered = checked(image)?;
                if !seen.insert(offered.id.clone()) {
                    return Err(ApiError::Paging {
                        operation: op,
                        message: format!("image {} is listed twice", offered.id),
                    });
                }
                images.push(offered);
            }
            if images.len() > cap {
                return Err(ApiError::TooManyImages {
                    operation: op,
                    limit: cap,
                    setting: "max_incoming_images",
                });
            }
            match (full, images.last()) {
                (true, Some(last)) => marker = Some(last.id.clone()),
                _ => return Ok(images),
            }
        }
    }
}

/// An offered image as the exporter keeps it, if well-formed.
fn checked(image: super::model::ImageSummary) -> Result<OfferedImage, ApiError> {
    let bad = |message: String| ApiError::Decode {
        operation: OP_LIST_SHARED_IMAGES,
        message,
        request_id: None,
    };
    let id = ImageId::parse(&image.id)
        .map_err(|_| bad("an image ID is not a UUID".into()))?
        .as_str()
        .to_string();
    let name = image.name.unwrap_or_default();
    let owner = image.owner.unwrap_or_default();
    if name.len() > MAX_NAME_BYTES || owner.len() > MAX_MEMBER_ID_BYTES {
        return Err(bad(format!("image {id}: name or owner too long")));
    }
    Ok(OfferedImage { id, name, owner })
}
