//! The exporter's own pages, written once: the router (`http::routes`), the request
//! cap (`http::serve`), the HTML pages and the `--web.telemetry-path` check all read
//! this table. A leaf.

pub const LANDING: &str = "/";
pub const SHARES: &str = "/shares";
pub const API_SHARES: &str = "/api/v1/shares";
pub const API_IMAGES: &str = "/api/v1/images";
pub const API_CHANGES: &str = "/api/v1/changes";
/// Images other tenants share with our projects (`incoming:`).
pub const API_INCOMING: &str = "/api/v1/incoming";
/// Pushed CTS events (`POST`, with `events.webhook`); not linked: nothing to browse.
pub const API_EVENTS: &str = "/api/v1/events";
pub const HEALTHY: &str = "/-/healthy";
pub const READY: &str = "/-/ready";
pub const RELOAD: &str = "/-/reload";

/// Every path the server answers itself; the metrics cannot live there.
pub const RESERVED: [&str; 11] = [
    LANDING,
    SHARES,
    API_SHARES,
    API_IMAGES,
    API_CHANGES,
    API_INCOMING,
    API_EVENTS,
    HEALTHY,
    READY,
    RELOAD,
    "/api/v1",
];

/// A page the landing page links to.
pub struct Page {
    pub path: &'static str,
    pub title: &'static str,
    pub description: &'static str,
}

/// The landing page's links after the metrics path (whose path is a flag), in order.
pub const LINKED: [Page; 7] = [
    Page {
        path: SHARES,
        title: "Shares",
        description: "who can boot which image, unexpected shares first",
    },
    Page {
        path: API_SHARES,
        title: "Shares (JSON)",
        description: "the same rows, filtered and paged",
    },
    Page {
        path: API_IMAGES,
        title: "Images (JSON)",
        description: "every monitored image and its poll health",
    },
    Page {
        path: API_CHANGES,
        title: "Changes (JSON)",
        description: "the most recent member changes",
    },
    Page {
        path: API_INCOMING,
        title: "Shared with us (JSON)",
        description: "images other tenants share with our projects, untrusted owners first",
    },
    Page {
        path: HEALTHY,
        title: "Health",
        description: "the process is up",
    },
    Page {
        path: READY,
        title: "Readiness",
        description: "the first poll cycle has finished",
    },
];
