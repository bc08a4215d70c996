#!/usr/bin/env python3
"""The official-SDK route as a user would first write it, and the first peer of
`ims-bench --peer`: prometheus_client `Gauge`s whose children are set after each poll
cycle and removed when a member goes, as the library's README instruments code, so the
samples live between scrapes (the shape of the route issue 23 measured: about 415 MiB
after its first cycle). Polling, arguments and logs are sdk_exporter.py's."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sdk_exporter as peer  # noqa: E402  (after the path it is found on)

from prometheus_client import Counter, Gauge  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402


class GaugeExport(Collector):
    """Sets the gauges when a cycle's data is stored; collects nothing itself."""

    def __init__(self, project_id):
        self.project_id = project_id
        self._state = ({}, {}, None, {})
        L = peer.IMAGE_LABELS
        g = lambda name, extra: Gauge(name, peer.HELP[name], L + extra)
        self.count = g("ims_image_members", ["member_type", "status"])
        self.info = g("ims_image_member_info", ["member_id", "member_type", "status", "urn"])
        self.created = g("ims_image_member_created_timestamp_seconds", ["member_id"])
        self.updated = g("ims_image_member_updated_timestamp_seconds", ["member_id"])
        self.age = g("ims_image_member_update_age_seconds", ["member_id"])
        self.ok = g("ims_image_poll_success", [])
        self.seconds = Gauge("ims_poll_duration_seconds", peer.HELP["ims_poll_duration_seconds"])
        self.requests = Counter("ims_api_requests", peer.HELP["ims_api_requests"],
                                ["operation", "code"])
        self.seen = (set(), set())  # the info and per-ID label sets set last cycle

    image_data = peer.ImsCollector.image_data

    def collect(self):
        return iter(())

    @property
    def state(self):
        return self._state

    @state.setter
    def state(self, value):
        images, success, seconds, requests = value
        now = time.time()
        infos, ids = set(), set()
        for counts, rows in images.values():
            for labels, n in counts:
                self.count.labels(*labels).set(n)
            for info_labels, id_labels, c, u in rows:
                self.info.labels(*info_labels).set(1)
                infos.add(tuple(info_labels))
                ids.add(tuple(id_labels))
                if c is not None:
                    self.created.labels(*id_labels).set(c)
                if u is not None:
                    self.updated.labels(*id_labels).set(u)
                    self.age.labels(*id_labels).set(max(now - u, 0.0))
        for gone in self.seen[0] - infos:
            self.info.remove(*gone)
        for gone in self.seen[1] - ids:
            for gauge in (self.created, self.updated, self.age):
                try:
                    gauge.remove(*gone)
                except KeyError:
                    pass
        self.seen = (infos, ids)
        for image_id, good in success.items():
            self.ok.labels(peer.REGION, self.project_id, image_id).set(1 if good else 0)
        if seconds is not None:
            self.seconds.set(seconds)
        old = self._state[3]
        for code, n in requests.items():
            self.requests.labels("ListImageMembers", code).inc(n - old.get(code, 0))
        self._state = value


if __name__ == "__main__":
    sys.exit(peer.main(GaugeExport))
