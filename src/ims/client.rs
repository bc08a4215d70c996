//! The IMS API operations: list an image's members (paging, caps, duplicates), get one
//! member, list the project's images, look up projects through IAM. Paths are built
//! from validated IDs; how each request travels (signing, limits, retries, body caps)
//! is [`super::transport`]'s.
//!
//! It counts requests in the self-metrics but owns no state about images: what a
//! result means is the poller's business.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use reqwest::Url;
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::listing::{page_hash, Listed, ListingPrint, PagePrint};
use super::model::{check_member, ImageList, ImageSummary, Member, MemberRef};
use super::observer::RequestObserver;
use super::transport::{CallContext, Transport};
use super::url::url;
use crate::auth::provider::CredentialProvider;
use crate::ids::{ImageId, MemberId, ProjectId};
use crate::ims::ratelimit::TokenBucket;

pub use super::transport::{ClientError, ClientOptions};

pub const OP_LIST_MEMBERS: &str = "list_members";
pub const OP_GET_MEMBER: &str = "get_member";
pub const OP_LIST_IMAGES: &str = "list_images";
pub const OP_LIST_PROJECTS: &str = "list_projects";
/// Images per discovery page.
const IMAGES_PAGE_SIZE: u32 = 500;
/// Bytes of unchanged pages one listing holds undecoded, in case a later page
/// differs; past it, they are decoded as they come. A listing of many long pages then
/// costs its decoding, not its memory, and one of a page or a few (most) neither.
const MAX_HELD_BYTES: usize = 256 * 1024;
/// Upper bound on pages of one discovery (500 × 200 = 100,000 images).
const MAX_IMAGE_PAGES: usize = 200;

/// How many members one image may have before its poll fails `too_large`: the
/// config's per-image cap, or less when the fleet-wide cap leaves less room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberCap {
    pub limit: usize,
    /// The config key that set `limit`, for the error message.
    pub setting: &'static str,
}

impl MemberCap {
    /// The error of a member list past this cap.
    pub fn exceeded(self, request_id: Option<String>) -> ApiError {
        ApiError::TooManyMembers {
            operation: OP_LIST_MEMBERS,
            limit: self.limit,
            setting: self.setting,
            request_id,
        }
    }
}
/// Where and as whom one project's calls go: what the client needs of a target.
#[derive(Debug, Clone)]
pub struct ApiTarget {
    /// Base URL of the IMS endpoint, without a trailing slash.
    pub endpoint: Url,
    pub project_id: ProjectId,
    pub credentials: Arc<CredentialProvider>,
    /// The target's request rate limit, if any.
    pub rate_limit: Option<Arc<TokenBucket>>,
    /// The target's share of the concurrent requests, so that a hung endpoint holds
    /// only its own share and delays only its own images.
    pub concurrency: Arc<Semaphore>,
}

/// The image-list filters the API applies (`GET /v2/cloudimages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFilter {
    pub imagetype: String,
    pub visibility: Option<String>,
    pub tag: Option<String>,
}
impl ApiTarget {
    pub fn call_context(&self) -> CallContext<'_> {
        CallContext {
            credentials: &self.credentials,
            project_id: Some(self.project_id.as_str()),
            rate_limit: self.rate_limit.as_deref(),
            concurrency: Some(&self.concurrency),
        }
    }
}
#[derive(Clone)]
pub struct ImsClient {
    transport: Transport,
}

impl ImsClient {
    pub(super) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// A client with the config's timeout, concurrency limit, retry policy and body cap.
    pub fn new(
        config: &ClientOptions,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<Self, ClientError> {
        Ok(ImsClient {
            transport: Transport::new(config, observer)?,
        })
    }

    /// All members of an image, following `page_info.next_marker`, each passed
    /// through `convert` while its page is decoded in place (see [`super::member_page`]).
    /// More than `cap.limit` members (a server that ignores `limit`, a marker that
    /// never ends) fail the call before they are all held. When every page is the
    /// `known` answer's, byte for byte, none is decoded: [`Listed::Same`].
    pub async fn list_members<R: Send>(
        &self,
        target: &ApiTarget,
        image: &ImageId,
        page_size: u32,
        cap: MemberCap,
        known: Option<&ListingPrint>,
        convert: &mut Convert<'_, R>,
    ) -> Result<Listed<R>, ApiError> {
        let op = OP_LIST_MEMBERS;
        let segments = [
            "v1",
            target.project_id.as_str(),
            "cloudimages",
            image.as_str(),
            "members",
        ];
        let limit = page_size.to_string();
        let max_pages = cap.limit / page_size.max(1) as usize + 1;
        let mut paging = Paging {
            known: known.filter(|k| k.fits(page_size, cap.limit, max_pages)),
            cap,
            convert,
            members: Vec::new(),
            pages: Vec::new(),
            held: Vec::new(),
            hold_limit: MAX_HELD_BYTES,
        };
        let mut seen_markers = HashSet::new();
        let mut marker: Option<String> = None;
        for _ in 0..max_pages {
            let mut query = vec![("limit", limit.as_str())];
            if let Some(m) = &marker {
                query.push(("marker", m.as_str()));
            }
            let url = url(op, &target.endpoint, &segments, &query)?;
            let (page, request_id) = self.member_page(target, url, &mut paging).await?;
            let next = match page {
                Page::TooMany => return Err(cap.exceeded(request_id)),
                Page::Same(None) => return Ok(Listed::Same),
                Page::Decoded(None) => return Ok(paging.changed(page_size)),
                Page::Same(Some(next)) | Page::Decoded(Some(next)) => next,
            };
            if !seen_markers.insert(next.clone()) {
                return Err(ApiError::Paging {
                    operation: op,
                    // (After a decoded page: the known answer's markers never repeat.)
                    message: format!(
                        "next_marker {next:?} repeats after {} members",
                        paging.members.len()
                    ),
                });
            }
            marker = Some(next);
        }
        Err(ApiError::Paging {
            operation: op,
            message: format!("more than {max_pages} pages"),
        })
    }

    /// One page of members, appended to `paging` as it is decoded in place, unless it
    /// is the known answer's page; with the answer's request id.
    async fn member_page<R: Send>(
        &self,
        target: &ApiTarget,
        url: Url,
        paging: &mut Paging<'_, R>,
    ) -> Result<(Page, Option<String>), ApiError> {
        let mut read = |body: &[u8]| paging.read(body);
        self.transport
            .get_decoded(OP_LIST_MEMBERS, &target.call_context(), url, &mut read)
            .await
    }

    /// One member of an image; `None` when the image is not shared with it (404).
    pub async fn get_member(
        &self,
        target: &ApiTarget,
        image: &ImageId,
        member: &MemberId,
    ) -> Result<Option<Member>, ApiError> {
        let op = OP_GET_MEMBER;
        let segments = [
            "v1",
            target.project_id.as_str(),
            "cloudimages",
            image.as_str(),
            "members",
            member.as_str(),
        ];
        let url = url(op, &target.endpoint, &segments, &[])?;
        match self
            .transport
            .get_json(op, &target.call_context(), url)
            .await
        {
            Ok(m) => {
                check_member(&MemberRef::from(&m)).map_err(|message| ApiError::Decode {
                    operation: op,
                    message,
                    request_id: None,
                })?;
                Ok(Some(m))
            }
            Err(ApiError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The target's own images matching the discovery filters that the API applies
    /// (image type, visibility, tag); paged by `marker` = last image ID.
    pub async fn list_images(
        &self,
        target: &ApiTarget,
        filter: &ImageFilter,
    ) -> Result<Vec<ImageSummary>, ApiError> {
        let op = OP_LIST_IMAGES;
        let limit = IMAGES_PAGE_SIZE.to_string();
        let mut images: Vec<ImageSummary> = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_IMAGE_PAGES {
            let mut query = vec![
                ("__imagetype", filter.imagetype.as_str()),
                ("limit", limit.as_str()),
            ];
            if let Some(v) = &filter.visibility {
                query.push(("visibility", v));
            }
            if let Some(t) = &filter.tag {
                query.push(("tag", t));
            }
            if let Some(m) = &marker {
                query.push(("marker", m));
            }
            let url = url(op, &target.endpoint, &["v2", "cloudimages"], &query)?;
            let page: ImageList = self
                .transport
                .get_json(op, &target.call_context(), url)
                .await?;
            let full = page.images.len() >= IMAGES_PAGE_SIZE as usize;
            let last = page.images.last().map(|i| i.id.clone());
            images.extend(page.images);
            match (full, last) {
                (true, Some(last)) => {
                    if marker.as_deref() == Some(last.as_str()) {
                        return Err(ApiError::Paging {
                            operation: op,
                            message: format!("marker {last} repeats"),
                        });
                    }
                    marker = Some(last);
                }
                _ => return Ok(images),
            }
        }
        Err(ApiError::Paging {
            operation: op,
            message: format!("more than {MAX_IMAGE_PAGES} pages"),
        })
    }

    /// The projects named `region` that the credentials can see, through IAM
    /// (`GET /v3/projects?name=`), as (ID, name).
    pub async fn lookup_projects(
        &self,
        iam_endpoint: &Url,
        region: &str,
        credentials: &CredentialProvider,
    ) -> Result<Vec<(String, String)>, ApiError> {
        #[derive(serde::Deserialize)]
        struct Projects {
            projects: Vec<Project>,
        }
        #[derive(serde::Deserialize)]
        struct Project {
            id: String,
            #[serde(default)]
            name: String,
        }
        let op = OP_LIST_PROJECTS;
        let url = url(op, iam_endpoint, &["v3", "projects"], &[("name", region)])?;
        let ctx = CallContext {
            credentials,
            project_id: None,
            rate_limit: None,
            concurrency: None,
        };
        let found: Projects = self.transport.get_json(op, &ctx, url).await?;
        Ok(found.projects.into_iter().map(|p| (p.id, p.name)).collect())
    }
}

/// What turns each member of a page, as decoded in place, into what the caller keeps.
pub type Convert<'c, R> = dyn FnMut(&MemberRef<'_>) -> R + Send + 'c;

/// A listing read so far.
struct Paging<'k, R> {
    /// The answer the pages so far are byte for byte, if any.
    known: Option<&'k ListingPrint>,
    cap: MemberCap,
    /// Turns each decoded member into what the listing keeps.
    convert: &'k mut Convert<'k, R>,
    members: Vec<R>,
    pages: Vec<PagePrint>,
    /// Pages that matched the known answer's and are not decoded (yet): should a
    /// later one differ, the members are all needed after all.
    held: Vec<Vec<u8>>,
    /// Bytes of pages held at most ([`MAX_HELD_BYTES`]).
    hold_limit: usize,
}

/// What one page said.
enum Page {
    /// The known answer's page, with its next marker.
    Same(Option<String>),
    /// Decoded, with its next marker.
    Decoded(Option<String>),
    /// It would pass the cap.
    TooMany,
}

impl<R> Paging<'_, R> {
    /// The members of a listing that ended on a decoded page, and its print.
    fn changed(self, page_size: u32) -> Listed<R> {
        let print = ListingPrint {
            page_size,
            members: self.members.len(),
            pages: self.pages,
        };
        Listed::Changed(self.members, print)
    }

    fn read(&mut self, body: &[u8]) -> Result<Page, String> {
        let hash = page_hash(body);
        let expected = self.known.and_then(|k| k.pages.get(self.pages.len()));
        if let Some(page) = expected.filter(|p| p.hash == hash) {
            self.pages.push(page.clone());
            if page.next_marker.is_some() && !self.hold(body)? {
                return Ok(Page::TooMany);
            }
            return Ok(Page::Same(page.next_marker.clone()));
        }
        self.known = None;
        let Some(next) = self.decode_with_held(body)? else {
            return Ok(Page::TooMany);
        };
        self.pages.push(PagePrint {
            hash,
            next_marker: next.clone(),
        });
        Ok(Page::Decoded(next))
    }

    /// Keeps a matched page that is not the last for later, within `hold_limit`;
    /// past it, decodes the held pages and this one now (members a listing found the
    /// same after all are dropped). False: they would pass the cap.
    fn hold(&mut self, body: &[u8]) -> Result<bool, String> {
        let held: usize = self.held.iter().map(Vec::len).sum();
        if held + body.len() <= self.hold_limit {
            self.held.push(body.to_vec());
            return Ok(true);
        }
        Ok(self.decode_with_held(body)?.is_some())
    }

    /// Decodes the held pages, in order, then `body`: as [`decode_page`] says of it.
    fn decode_with_held(&mut self, body: &[u8]) -> Result<Option<Option<String>>, String> {
        for held in std::mem::take(&mut self.held) {
            if self.decode(&held)?.is_none() {
                return Ok(None);
            }
        }
        self.decode(body)
    }

    /// One page decoded and checked, its members appended through `convert`: its next
    /// marker, or `None` when it would pass the cap.
    fn decode(&mut self, body: &[u8]) -> Result<Option<Option<String>>, String> {
        let page = super::member_page::decode(body)?;
        if self.members.len() + page.members.len() > self.cap.limit {
            return Ok(None);
        }
        for m in &page.members {
            check_member(m)?;
        }
        self.members
            .extend(page.members.iter().map(&mut *self.convert));
        Ok(Some(
            page.page_info
                .and_then(|p| p.next_marker)
                .filter(|m| !m.is_empty())
                .map(Cow::into_owned),
        ))
    }
}

#[cfg(test)]
mod tests;
