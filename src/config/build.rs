//! From the file's values to the validated config, block by block (settings,
//! credentials, allowlists, targets, images), synchronously. A target without a
//! project ID comes out with a [`LookupRequest`]: the async IAM step
//! ([`super::build()`]) is apart, and [`Plan::finish`] checks what needs every
//! project ID (duplicate targets and images).

use std::collections::HashMap;
use std::path::Path;

use reqwest::Url;

use super::events::events;
use super::file::{
    FileConfig, FileDiscover, FileTarget, DEFAULT_CTS_ENDPOINT, DEFAULT_ENDPOINT,
    DEFAULT_IAM_ENDPOINT,
};
use super::incoming::{target_incoming, trusted_owners};
use super::types::{Config, Discover, Events, Fail, ImageConfig, LookupRequest, Target};
use crate::allowlist::{Allowlist, AllowlistFile, Entry};
use crate::auth::credentials;
use crate::auth::source::{Chain, CredentialSource, ENV_CREDENTIALS_FILE};
use crate::ids::{ImageId, MemberId, ProjectId, Source};
use crate::ims::client::{ClientOptions, ImageFilter};
use crate::ims::ratelimit::Rate;
use crate::ims::retry::RetryPolicy;
use crate::shard::Shard;

/// A target whose project ID is known or still to be looked up.
pub(super) enum Project {
    Known(ProjectId),
    Lookup(Box<LookupRequest>),
}

/// One target as planned, before its project ID is settled.
pub(super) struct PlannedTarget {
    pub(super) region: String,
    pub(super) project: Project,
    endpoint: Url,
    credentials: CredentialSource,
    rate_limit: Option<Rate>,
    iam_endpoint: Url,
    cts_endpoint: Option<Url>,
    incoming: Option<Allowlist>,
    allowlist: Allowlist,
    discover: Option<Discover>,
    images: Vec<ImageConfig>,
}

impl PlannedTarget {
    fn into_target(self, project_id: ProjectId) -> Target {
        Target {
            region: self.region,
            endpoint: self.endpoint,
            project_id,
            credentials: self.credentials,
            rate_limit: self.rate_limit,
            iam_endpoint: self.iam_endpoint,
            cts_endpoint: self.cts_endpoint,
            incoming: self.incoming,
            allowlist: self.allowlist,
            discover: self.discover,
            images: self.images,
        }
    }
}

/// The validated config, its targets' project IDs not all known yet.
pub(super) struct Plan {
    pub(super) targets: Vec<PlannedTarget>,
    /// Everything but the targets.
    settings: Config,
}

impl Plan {
    /// The config, with `ids` the project ID of each target (in order): checks what
    /// needs them.
    pub(super) fn finish(self, ids: Vec<ProjectId>) -> Result<Config, Fail> {
        let mut targets: Vec<Target> = Vec::with_capacity(self.targets.len());
        let mut seen: HashMap<(ProjectId, ImageId), String> = HashMap::new();
        for (ti, (t, project_id)) in self.targets.into_iter().zip(ids).enumerate() {
            let key = |k: &str| format!("targets[{ti}].{k}");
            if let Some(first) = targets
                .iter()
                .position(|o| o.region == t.region && o.project_id() == &project_id)
            {
                // Per-target series (discovery, cycle time) are labelled by region and project.
                return Err((
                    key("project_id"),
                    format!("region {} project {project_id} is already targets[{first}]; list its images there", t.region),
                ));
            }
            for (ii, image) in t.images.iter().enumerate() {
                let path = key(&format!("images[{ii}].id"));
                let id = &image.id;
                if let Some(first) = seen.insert((project_id.clone(), id.clone()), path.clone()) {
                    return Err((
                        path,
                        format!("image {id} in project {project_id} is already listed at {first}"),
                    ));
                }
            }
            targets.push(t.into_target(project_id));
        }
        Ok(Config {
            targets,
            ..self.settings
        })
    }
}

/// Validates the file's values and builds the plan. `env` looks up environment
/// variables (the credentials chain).
pub(super) fn plan(raw: &FileConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Plan, Fail> {
    let max_response_bytes = super::validate::settings(raw)?;
    let global_rate = parse_rate("rate_limit".into(), &raw.rate_limit)?;
    let events = events(raw.events.as_ref())?;
    let trusted = match &raw.incoming {
        None => None,
        Some(i) => Some(trusted_owners(
            &i.trusted_owners,
            i.trusted_owners_file.as_deref(),
            "incoming.",
        )?),
    };
    let client = client_options(raw, max_response_bytes);
    if raw.targets.is_empty() {
        return Err(("targets".into(), "at least one target is required".into()));
    }
    if let Some(ca) = &raw.ca_file {
        crate::tls::read_ca_file(ca).map_err(|m| ("ca_file".into(), m))?;
    }
    // The chain for targets without their own block: top-level block, environment,
    // SDK credentials file, ECS metadata. One source, shared by those targets.
    let chain = Chain {
        env,
        ecs_metadata: ecs_metadata(raw)?,
    };
    let global = chain
        .resolve(raw.credentials.as_ref(), "credentials")
        .map_err(|e| (e.key, e.message))?;
    let global_allow = allowlist(
        &raw.allowed_members,
        raw.allowed_members_file.as_deref(),
        "",
    )?;
    let shared = Shared {
        client: &client,
        global_rate,
        chain: &chain,
        credentials: global.as_ref(),
        allowlist: &global_allow,
        cts: events.cts.is_some(),
        trusted: trusted.as_ref(),
    };
    let targets = raw
        .targets
        .iter()
        .enumerate()
        .map(|(ti, t)| target(ti, t, &shared))
        .collect::<Result<Vec<_>, Fail>>()?;
    Ok(Plan {
        targets,
        settings: settings(raw, client, events),
    })
}

/// How the API client behaves, from the top-level keys.
fn client_options(raw: &FileConfig, max_response_bytes: usize) -> ClientOptions {
    ClientOptions {
        request_timeout: raw.request_timeout,
        max_concurrent_requests: raw.max_concurrent_requests as usize,
        retry: RetryPolicy {
            max_attempts: raw.retry.max_attempts as u32,
            initial_backoff: raw.retry.initial_backoff,
            max_backoff: raw.retry.max_backoff,
        },
        max_response_bytes,
        ca_file: raw.ca_file.clone(),
        insecure_skip_verify: raw.insecure_skip_verify,
    }
}

/// `ecs_metadata:`: the service's URL and the request timeout, if configured.
fn ecs_metadata(raw: &FileConfig) -> Result<Option<(Url, std::time::Duration)>, Fail> {
    let Some(m) = &raw.ecs_metadata else {
        return Ok(None);
    };
    let url = m
        .url
        .as_deref()
        .unwrap_or(crate::auth::ecs_metadata::DEFAULT_URL);
    let url = parse_endpoint(url, "").map_err(|m| ("ecs_metadata.url".into(), m))?;
    Ok(Some((url, raw.request_timeout)))
}

/// Everything but the targets.
fn settings(raw: &FileConfig, client: ClientOptions, events: Events) -> Config {
    Config {
        poll_interval: raw.poll_interval,
        request_timeout: raw.request_timeout,
        page_size: raw.page_size as u32,
        max_concurrent_requests: raw.max_concurrent_requests as usize,
        discovery_interval: raw.discovery_interval,
        member_metrics: raw.member_metrics,
        shard: Shard::default(),
        retry: client.retry,
        max_response_bytes: client.max_response_bytes,
        max_members_per_image: raw.max_members_per_image as usize,
        max_members_total: raw.max_members_total as usize,
        ca_file: client.ca_file,
        insecure_skip_verify: client.insecure_skip_verify,
        events,
        incoming_interval: raw
            .incoming
            .as_ref()
            .map(|i| i.interval.unwrap_or(raw.discovery_interval)),
        max_incoming_images: raw.max_incoming_images as usize,
        targets: Vec::new(),
    }
}

/// What every target inherits from the top level.
struct Shared<'a> {
    client: &'a ClientOptions,
    global_rate: Option<Rate>,
    chain: &'a Chain<'a>,
    credentials: Option<&'a CredentialSource>,
    allowlist: &'a Allowlist,
    /// `events.cts` is set: targets read traces unless they opt out.
    cts: bool,
    /// `incoming:` is set: its trusted owners, which every target lists against.
    trusted: Option<&'a Allowlist>,
}

/// `targets[ti]`: its endpoints, rate limit, credentials, project, allowlist,
/// discovery and images.
fn target(ti: usize, t: &FileTarget, shared: &Shared<'_>) -> Result<PlannedTarget, Fail> {
    let key = |k: &str| format!("targets[{ti}].{k}");
    check_region(&t.region).map_err(|m| (key("region"), m))?;
    let iam_endpoint = parse_endpoint(
        t.iam_endpoint.as_deref().unwrap_or(DEFAULT_IAM_ENDPOINT),
        &t.region,
    )
    .map_err(|m| (key("iam_endpoint"), m))?;
    let rate_limit = parse_rate(key("rate_limit"), &t.rate_limit)?.or(shared.global_rate);
    let endpoint = parse_endpoint(t.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT), &t.region)
        .map_err(|m| (key("endpoint"), m))?;
    let cts_endpoint = cts_endpoint(ti, t, shared)?;
    let incoming = target_incoming(ti, t, shared.trusted)?;
    let credentials = target_credentials(ti, t, shared)?;
    let project = match &t.project_id {
        Some(p) => Project::Known(ProjectId::parse(p).map_err(|e| (key("project_id"), e.0))?),
        None => Project::Lookup(Box::new(LookupRequest {
            key: key("project_id"),
            client: shared.client.clone(),
            region: t.region.clone(),
            iam_endpoint: iam_endpoint.clone(),
            credentials: credentials.clone(),
        })),
    };
    if t.images.is_empty() && t.discover.is_none() {
        return Err((
            key("images"),
            "at least one image is required (or a discover: block)".into(),
        ));
    }
    let target_allow = Allowlist::merge(&[
        shared.allowlist,
        &allowlist(
            &t.allowed_members,
            t.allowed_members_file.as_deref(),
            &format!("targets[{ti}]."),
        )?,
    ]);
    let discover = match &t.discover {
        None => None,
        Some(d) => Some(discover(d, &key("discover"))?),
    };
    let images = images(ti, t, &target_allow)?;
    Ok(PlannedTarget {
        region: t.region.clone(),
        project,
        endpoint,
        credentials,
        rate_limit,
        iam_endpoint,
        cts_endpoint,
        incoming,
        allowlist: target_allow,
        discover,
        images,
    })
}

/// Where `targets[ti]` reads traces: none without `events.cts` or with `cts: false`.
fn cts_endpoint(ti: usize, t: &FileTarget, shared: &Shared<'_>) -> Result<Option<Url>, Fail> {
    if !(shared.cts && t.cts) {
        return Ok(None);
    }
    let template = t.cts_endpoint.as_deref().unwrap_or(DEFAULT_CTS_ENDPOINT);
    parse_endpoint(template, &t.region)
        .map(Some)
        .map_err(|m| (format!("targets[{ti}].cts_endpoint"), m))
}

/// A region name: lowercase letters, digits and dashes.
fn check_region(region: &str) -> Result<(), String> {
    let valid = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "must be a region name like cn-north-4, got {region:?}"
        ))
    }
}

/// `targets[ti].credentials`, or the top-level chain's source.
fn target_credentials(
    ti: usize,
    t: &FileTarget,
    shared: &Shared<'_>,
) -> Result<CredentialSource, Fail> {
    let key = format!("targets[{ti}].credentials");
    if let Some(c) = &t.credentials {
        return shared
            .chain
            .resolve(Some(c), &key)
            .map_err(|e| (e.key, e.message))?
            .ok_or_else(|| (key, "no credentials".to_string()));
    }
    shared.credentials.cloned().ok_or_else(|| {
        (
            "credentials".to_string(),
            format!(
                "no credentials for targets[{ti}]: set credentials.access_key_id and \
                 credentials.secret_access_key (or their _file variants), or the {} and {} \
                 environment variables, or [basic] ak and sk in the SDK credentials file ({}), \
                 or ecs_metadata on an ECS/CCE server with an agency",
                credentials::ENV_AK,
                credentials::ENV_SK,
                shared
                    .chain
                    .credentials_file()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| ENV_CREDENTIALS_FILE.into()),
            ),
        )
    })
}

/// `targets[ti].images`: IDs, expected members (on top of the target's allowlist),
/// watched members.
fn images(ti: usize, t: &FileTarget, target_allow: &Allowlist) -> Result<Vec<ImageConfig>, Fail> {
    let key = |k: &str| format!("targets[{ti}].{k}");
    let mut images = Vec::with_capacity(t.images.len());
    for (ii, img) in t.images.iter().enumerate() {
        let ikey = |k: &str| key(&format!("images[{ii}].{k}"));
        let id = ImageId::parse(&img.id).map_err(|e| (ikey("id"), e.0))?;
        let expected = allowlist(
            &img.expected_members,
            None,
            &format!("targets[{ti}].images[{ii}]."),
        )
        .map_err(|(k, m)| (k.replace("allowed_members", "expected_members"), m))?;
        let mut watch_members = Vec::with_capacity(img.watch_members.len());
        for (wi, m) in img.watch_members.iter().enumerate() {
            let wkey = ikey(&format!("watch_members[{wi}]"));
            let id = MemberId::parse(m).map_err(|e| (wkey.clone(), e.0))?;
            if watch_members.contains(&id) {
                return Err((wkey, format!("{id} is listed twice")));
            }
            watch_members.push(id);
        }
        if !img.list_members && watch_members.is_empty() {
            return Err((
                ikey("list_members"),
                "with list_members: false, watch_members must name at least one member".into(),
            ));
        }
        images.push(ImageConfig {
            id,
            name: img.name.clone(),
            source: Source::Config,
            allowlist: Allowlist::merge(&[target_allow, &expected]),
            watch_members,
            list_members: img.list_members,
        });
    }
    Ok(images)
}

/// A `rate_limit` value, if set.
fn parse_rate(key: String, value: &Option<String>) -> Result<Option<Rate>, Fail> {
    value
        .as_deref()
        .map(Rate::parse)
        .transpose()
        .map_err(|m| (key, m))
}

/// Validates `allowed_members` entries and loads `allowed_members_file`. `prefix` is
/// the key path of the block (`""` at top level). Errors are (key, message).
fn allowlist(
    entries: &[String],
    file: Option<&Path>,
    prefix: &str,
) -> Result<Allowlist, (String, String)> {
    let mut out = Allowlist::default();
    for (i, e) in entries.iter().enumerate() {
        std::sync::Arc::make_mut(&mut out.entries)
            .push(Entry::parse(e).map_err(|m| (format!("{prefix}allowed_members[{i}]"), m))?);
    }
    if let Some(path) = file {
        out.files.push(
            AllowlistFile::load(path).map_err(|m| (format!("{prefix}allowed_members_file"), m))?,
        );
    }
    Ok(out)
}

fn discover(d: &FileDiscover, key: &str) -> Result<Discover, (String, String)> {
    let name_regex = match &d.name_regex {
        None => None,
        Some(r) => Some(regex::Regex::new(r).map_err(|e| {
            (
                format!("{key}.name_regex"),
                format!("not a valid regular expression: {e}"),
            )
        })?),
    };
    let mut exclude_ids = Vec::with_capacity(d.exclude_ids.len());
    for (i, id) in d.exclude_ids.iter().enumerate() {
        exclude_ids.push(ImageId::parse(id).map_err(|e| (format!("{key}.exclude_ids[{i}]"), e.0))?);
    }
    let simple = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if !simple(&d.imagetype) {
        return Err((
            format!("{key}.imagetype"),
            format!("must be an image type like private, got {:?}", d.imagetype),
        ));
    }
    if let Some(v) = d.visibility.as_deref().filter(|v| !simple(v)) {
        return Err((
            format!("{key}.visibility"),
            format!("must be a visibility like private or shared, got {v:?}"),
        ));
    }
    Ok(Discover {
        api: ImageFilter {
            imagetype: d.imagetype.clone(),
            tag: d.tag.clone(),
            visibility: d.visibility.clone(),
        },
        name_regex,
        exclude_ids,
    })
}

/// An endpoint URL, `{region}` substituted; http(s) only, no query or fragment.
fn parse_endpoint(template: &str, region: &str) -> Result<Url, String> {
    let text = template.replace("{region}", region);
    let url = Url::parse(&text).map_err(|e| format!("not a URL ({e}): {text:?}"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("must be an http or https URL, got {text:?}"));
    }
    if url.query().is_some() || url.fragment().is_some() || url.host_str().is_none() {
        return Err(format!(
            "must be a base URL without query or fragment, got {text:?}"
        ));
    }
    Ok(url)
}
