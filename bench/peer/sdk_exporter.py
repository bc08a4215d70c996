#!/usr/bin/env python3
"""The official-SDK route written lean, the second peer of `ims-bench --peer` (the first,
sdk_gauges.py, and sdk_objects.py export this file's polling their own way): the official
SDK (huaweicloudsdkims v2 ImsClient, ListImageMembersRequest paged by
page_info.next_marker) and prometheus_client (a custom collector that builds the samples
at scrape time, served by start_http_server). Each cycle polls every image on a thread
pool, swaps the new data in whole (a failed image keeps its last data) and sleeps
--interval seconds. Run as:

    python3 bench/peer/sdk_exporter.py --endpoint http://127.0.0.1:PORT --ak AK --sk SK \\
        --project-id PID --images-file FILE --listen 127.0.0.1:PORT2 \\
        --concurrency 16 --page-size 1000 --interval 1

FILE: one image ID per line. Logs `listening address=HOST:PORT` and `cycle N done in X s` on
stderr; exits 0 on SIGTERM/SIGINT, 3 if the SDK or prometheus_client is not importable.
"""

import argparse
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

try:
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions.exceptions import ServiceResponseException as ApiError
    from huaweicloudsdkcore.http.http_config import HttpConfig
    from huaweicloudsdkims.v2 import ImsClient, ListImageMembersRequest
    from prometheus_client import REGISTRY, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as e:
    print(f"huaweicloudsdkims and prometheus_client are required: {e}", file=sys.stderr)
    sys.exit(3)

REGION = "bench"
TYPES, STATUSES = ("project", "domain", "organization"), ("accepted", "rejected", "pending")
IMAGE_LABELS = ["region", "project_id", "image_id"]

HELP = {  # ims-exporter's help texts, shortened
    "ims_image_members": "Members of the image by member type and status.",
    "ims_image_member_info": "One series per member of the image; value is always 1.",
    "ims_image_member_created_timestamp_seconds": "Unix time the image was shared (created_at).",
    "ims_image_member_updated_timestamp_seconds": "Unix time the share was last updated.",
    "ims_image_member_update_age_seconds": "Seconds since the share was last updated.",
    "ims_image_poll_success": "1 if the last poll of the image succeeded, 0 if it failed.",
    "ims_poll_duration_seconds": "Wall time of the last complete poll cycle.",
    "ims_api_requests": "IMS API requests by operation and HTTP status code.",
}


def unix(ts):
    """`2023-08-23T04:07:52Z` as Unix seconds; None when absent or unreadable."""
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return None


def poll_image(client, image_id, page_size):
    """Every member of the image, page by page: (members, pages); raises on failure."""
    members, marker, pages = [], None, 0
    while True:
        resp = client.list_image_members(
            ListImageMembersRequest(image_id=image_id, limit=page_size, marker=marker))
        if resp.members is None:
            raise ValueError("answer without a member list")
        members.extend(resp.members)
        pages += 1
        marker = resp.page_info.next_marker if resp.page_info else None
        if not marker:
            return members, pages


class ImsCollector(Collector):
    def __init__(self, project_id):
        self.project_id = project_id
        # (images, success, cycle seconds, requests), replaced whole after each cycle;
        # images: image ID -> (counts [(labels, n)], members [(info, id labels, created, updated)]).
        self.state = ({}, {}, None, {})

    def image_data(self, image_id, members):
        base = [REGION, self.project_id, image_id]
        counts = dict.fromkeys(((t, s) for t in TYPES for s in STATUSES), 0)
        rows = []
        for m in members:
            counts[(m.member_type, m.status)] = counts.get((m.member_type, m.status), 0) + 1
            rows.append((base + [m.member_id, m.member_type, m.status, m.urn or ""],
                         base + [m.member_id], unix(m.created_at), unix(m.updated_at)))
        return [(base + list(k), n) for k, n in counts.items()], rows

    def converted(self, image_id, data):
        """An image's stored data as image_data returns it (here: stored that way)."""
        return data

    def collect(self):
        images, success, seconds, requests = self.state
        now = time.time()
        g = lambda name, extra: GaugeMetricFamily(name, HELP[name], labels=IMAGE_LABELS + extra)
        count = g("ims_image_members", ["member_type", "status"])
        info = g("ims_image_member_info", ["member_id", "member_type", "status", "urn"])
        created = g("ims_image_member_created_timestamp_seconds", ["member_id"])
        updated = g("ims_image_member_updated_timestamp_seconds", ["member_id"])
        age = g("ims_image_member_update_age_seconds", ["member_id"])
        for image_id, data in images.items():
            counts, rows = self.converted(image_id, data)
            for labels, n in counts:
                count.add_metric(labels, n)
            for info_labels, id_labels, c, u in rows:
                info.add_metric(info_labels, 1)
                if c is not None:
                    created.add_metric(id_labels, c)
                if u is not None:
                    updated.add_metric(id_labels, u)
                    age.add_metric(id_labels, max(now - u, 0.0))
        ok = g("ims_image_poll_success", [])
        for image_id, good in success.items():
            ok.add_metric([REGION, self.project_id, image_id], 1 if good else 0)
        yield from (count, info, created, updated, age, ok)
        if seconds is not None:
            name = "ims_poll_duration_seconds"
            yield GaugeMetricFamily(name, HELP[name], value=seconds)
        req = CounterMetricFamily("ims_api_requests", HELP["ims_api_requests"],
                                  labels=["operation", "code"])
        for code, n in requests.items():
            req.add_metric(["ListImageMembers", code], n)
        yield req


def main(make_collector=None):
    """`make_collector(project_id)`: how the data is exported (this file's collector
    unless another peer script passes its own)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--endpoint", "--ak", "--sk", "--project-id", "--images-file", "--listen"):
        p.add_argument(flag, required=True)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--page-size", type=int, default=1000)
    p.add_argument("--interval", type=float, default=15.0)
    args = p.parse_args()
    with open(args.images_file) as f:
        image_ids = [line.strip() for line in f if line.strip()]

    # One client for all threads: requests' Session and urllib3's pool are thread-safe,
    # the pool just has to be as large as the thread pool (the SDK's default is 10).
    config = HttpConfig.get_default_config()
    config.pool_connections = config.pool_maxsize = max(args.concurrency, 10)
    config.timeout = (10, 30)
    client = (ImsClient.new_builder()
              .with_credentials(BasicCredentials(args.ak, args.sk, args.project_id))
              .with_endpoint(args.endpoint).with_http_config(config).build())

    collector = (make_collector or ImsCollector)(args.project_id)
    REGISTRY.register(collector)
    host, port = args.listen.rsplit(":", 1)
    server, _ = start_http_server(int(port), addr=host.strip("[]"))
    print(f"listening address={host}:{server.server_address[1]}", file=sys.stderr, flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def poll(image_id):
        """(image ID, its new data or None, good requests, failed request's code or None)."""
        if stop.is_set():
            return image_id, None, 0, None
        try:
            members, pages = poll_image(client, image_id, args.page_size)
            return image_id, collector.image_data(image_id, members), pages, None
        except Exception as e:  # API errors, connection errors, timeouts, bad answers
            print(f"image {image_id}: poll failed: {e}", file=sys.stderr, flush=True)
            return image_id, None, 0, str(e.status_code) if isinstance(e, ApiError) else "error"

    cycle, requests = 0, {}
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        while not stop.is_set():
            start = time.monotonic()
            images, success = dict(collector.state[0]), dict(collector.state[1])
            requests = dict(requests)
            for image_id, data, pages, failed in pool.map(poll, image_ids):
                success[image_id] = data is not None
                if data is not None:
                    images[image_id] = data
                if failed:
                    requests[failed] = requests.get(failed, 0) + 1
                requests["200"] = requests.get("200", 0) + pages
            if stop.is_set():
                break
            seconds = time.monotonic() - start
            collector.state = (images, success, seconds, requests)
            cycle += 1
            print(f"cycle {cycle} done in {seconds:.3f} s", file=sys.stderr, flush=True)
            stop.wait(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
