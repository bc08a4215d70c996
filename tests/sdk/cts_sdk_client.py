#!/usr/bin/env python3
"""A real Cloud Trace Service client built from the official Huawei Cloud Python SDK.

Used by tests/it/sdk_compat.rs to prove the fake's trace list speaks the real API: the
SDK signs its requests (SDK-HMAC-SHA256), pages the IMS traces by passing
meta_data.marker back as `next` and decodes the responses with its own models.

    cts_sdk_client.py ENDPOINT AK SK PROJECT_ID FROM_MS TO_MS LIMIT

Prints one JSON object on stdout:

    {"pages": N, "markers": [marker, ...], "counts": [meta_data.count, ...],
     "traces": [{"trace_id", "trace_name", "trace_rating", "trace_type",
                 "service_type", "resource_type", "resource_id", "resource_name",
                 "request", "response", "code", "api_version", "time", "record_time",
                 "source_ip", "request_id", "location_info",
                 "user": {"id", "name", "domain": {"id", "name"}}}, ...]}

On an API error prints {"error": {"status_code", "error_code", "error_msg",
"request_id"}} on stdout, the SDK's own message on stderr, and exits 1.
Exit 3 means the SDK is not importable (the test turns that into a skip or,
under CI, a failure).
"""

import json
import sys

try:
    from huaweicloudsdkcts.v3 import CtsClient, ListTracesRequest
except ImportError as e:  # pragma: no cover - exercised by the skip path only
    print(f"huaweicloudsdkcts is not importable: {e}", file=sys.stderr)
    sys.exit(3)

FIELDS = (
    "trace_id",
    "trace_name",
    "trace_rating",
    "trace_type",
    "service_type",
    "resource_type",
    "resource_id",
    "resource_name",
    "request",
    "response",
    "code",
    "api_version",
    "time",
    "record_time",
    "source_ip",
    "request_id",
    "location_info",
)

# Guards against a server that never stops handing out markers.
MAX_PAGES = 10_000


def trace_dict(t):
    d = {f: getattr(t, f) for f in FIELDS}
    user = t.user
    domain = user.domain if user is not None else None
    d["user"] = (
        None
        if user is None
        else {
            "id": user.id,
            "name": user.name,
            "domain": None if domain is None else {"id": domain.id, "name": domain.name},
        }
    )
    return d


def main(argv):
    if len(argv) != 8:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, ak, sk, project_id, from_ms, to_ms, limit = argv[1:]

    client = sdk_client(CtsClient, endpoint, ak, sk, project_id)

    traces = []
    pages = 0
    marker = None
    markers = []
    counts = []
    while True:
        # The SDK spells `from` as `_from` (a Python keyword).
        request = ListTracesRequest(
            trace_type="system",
            service_type="IMS",
            _from=int(from_ms),
            to=int(to_ms),
            limit=int(limit),
            next=marker,
        )
        response = client.list_traces(request)
        pages += 1
        traces.extend(trace_dict(t) for t in (response.traces or []))
        meta = response.meta_data
        counts.append(meta.count if meta is not None else None)
        marker = meta.marker if meta is not None else None
        if not marker:
            break
        if marker in markers or pages >= MAX_PAGES:
            raise RuntimeError(f"paging does not terminate (marker {marker!r} repeated)")
        markers.append(marker)

    json.dump(
        {"pages": pages, "markers": markers, "counts": counts, "traces": traces},
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    from sdk_main import run, sdk_client

    run(main)
