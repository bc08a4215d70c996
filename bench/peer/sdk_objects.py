#!/usr/bin/env python3
"""The official-SDK peer keeping what the SDK returns (`ims-bench --peer --peer-script
bench/peer/sdk_objects.py`): each image's `ImageMember` objects are stored as they come
and turned into samples at scrape time. Polling, arguments, families and logs are
sdk_exporter.py's."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sdk_exporter as peer  # noqa: E402  (after the path it is found on)


class ObjectCollector(peer.ImsCollector):
    def image_data(self, image_id, members):
        return members

    def converted(self, image_id, data):
        return peer.ImsCollector.image_data(self, image_id, data)


if __name__ == "__main__":
    sys.exit(peer.main(ObjectCollector))
