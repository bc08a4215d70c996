#!/usr/bin/env python3
"""A real IMS client built from the official Huawei Cloud Python SDK.

Used by tests/it/sdk_compat.rs to prove the fake IMS speaks the real API: the SDK signs
its requests (SDK-HMAC-SHA256), pages the member list by following
page_info.next_marker and decodes the responses with its own models.

    ims_sdk_client.py ENDPOINT AK SK PROJECT_ID IMAGE_ID MEMBER_ID LIMIT

Prints one JSON object on stdout:

    {"pages": N, "markers": [next_marker, ...],
     "members": [{"member_id", "member_type", "status", "urn", "created_at",
                  "updated_at", "image_id", "schema"}, ...],
     "detail": {...same fields, for MEMBER_ID...}}

On an API error prints {"error": {"status_code", "error_code", "error_msg",
"request_id"}} on stdout, the SDK's own message on stderr, and exits 1.
Exit 3 means the SDK is not importable (the test turns that into a skip or,
under CI, a failure).
"""

import json
import sys

try:
    from huaweicloudsdkims.v2 import (
        ImsClient,
        ListImageMembersRequest,
        ShowImageMemberRequest,
    )
except ImportError as e:  # pragma: no cover - exercised by the skip path only
    print(f"huaweicloudsdkims is not importable: {e}", file=sys.stderr)
    sys.exit(3)

FIELDS = (
    "member_id",
    "member_type",
    "status",
    "urn",
    "created_at",
    "updated_at",
    "image_id",
    "schema",
)

# Guards against a server that never stops handing out markers.
MAX_PAGES = 10_000


def member_dict(m):
    return {f: getattr(m, f) for f in FIELDS}


def main(argv):
    if len(argv) != 8:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, ak, sk, project_id, image_id, member_id, limit = argv[1:]
    limit = int(limit)

    client = sdk_client(ImsClient, endpoint, ak, sk, project_id)

    members = []
    pages = 0
    marker = None
    markers = []
    while True:
        request = ListImageMembersRequest(image_id=image_id, limit=limit, marker=marker)
        response = client.list_image_members(request)
        pages += 1
        members.extend(member_dict(m) for m in (response.members or []))
        page_info = response.page_info
        marker = page_info.next_marker if page_info is not None else None
        if not marker:
            break
        if marker in markers or pages >= MAX_PAGES:
            raise RuntimeError(f"paging does not terminate (marker {marker!r} repeated)")
        markers.append(marker)

    detail = client.show_image_member(
        ShowImageMemberRequest(image_id=image_id, member_id=member_id)
    )

    json.dump(
        {"pages": pages, "markers": markers, "members": members, "detail": member_dict(detail)},
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    from sdk_main import run, sdk_client

    run(main)
