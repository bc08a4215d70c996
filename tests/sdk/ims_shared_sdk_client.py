#!/usr/bin/env python3
"""The recipient's side of image sharing, as a client of the official Huawei Cloud
Python SDK: the images other tenants offer to a project.

Used by tests/it/sdk_compat.rs to prove the fake's `__imagetype=shared` listing speaks
the real API: the SDK signs its requests (SDK-HMAC-SHA256, with the X-Project-Id
header BasicCredentials adds), sends ListImagesRequest's query, and decodes the
answers with its own models (ListImagesResponse, ImageInfo). For each member status
it pages by passing the last image ID back as `marker` until a page is short.

    ims_shared_sdk_client.py ENDPOINT AK SK PROJECT_ID LIMIT STATUS [STATUS...]

Prints one JSON object on stdout:

    {"STATUS": {"pages": N, "markers": [marker, ...],
                "images": [{"id", "name", "owner", "visibility", "imagetype",
                            "status", "protected", "min_disk"}, ...]}, ...}

On an API error prints {"error": {"status_code", "error_code", "error_msg",
"request_id"}} on stdout, the SDK's own message on stderr, and exits 1.
Exit 3 means the SDK is not importable (the test turns that into a skip or,
under CI, a failure).
"""

import json
import sys

try:
    from huaweicloudsdkims.v2 import ImsClient, ListImagesRequest
except ImportError as e:  # pragma: no cover - exercised by the skip path only
    print(f"huaweicloudsdkims is not importable: {e}", file=sys.stderr)
    sys.exit(3)

FIELDS = ("id", "name", "owner", "visibility", "imagetype", "status", "protected", "min_disk")

# Guards against a server that never stops handing out full pages.
MAX_PAGES = 10_000


def image_dict(i):
    return {f: getattr(i, f) for f in FIELDS}


def list_offers(client, status, limit):
    """Every image offered with our `status`, page by page."""
    images = []
    markers = []
    marker = None
    pages = 0
    while True:
        request = ListImagesRequest(
            imagetype="shared",
            visibility="shared",
            member_status=status,
            limit=limit,
            marker=marker,
        )
        response = client.list_images(request)
        pages += 1
        page = response.images
        if page is None:
            raise RuntimeError(f"page {pages} of {status} has no images list")
        images.extend(image_dict(i) for i in page)
        if len(page) < limit:
            break
        marker = page[-1].id
        if marker in markers or pages >= MAX_PAGES:
            raise RuntimeError(f"paging does not terminate (marker {marker!r} repeated)")
        markers.append(marker)
    return {"pages": pages, "markers": markers, "images": images}


def main(argv):
    if len(argv) < 7:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, ak, sk, project_id, limit = argv[1:6]
    limit = int(limit)

    client = sdk_client(ImsClient, endpoint, ak, sk, project_id)
    result = {status: list_offers(client, status, limit) for status in argv[6:]}
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    from sdk_main import run, sdk_client

    run(main)
