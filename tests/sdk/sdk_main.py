"""What every SDK client script here does around its main(): run it, and when the SDK
raises a service error, print it as JSON ({"error": {status_code, error_code,
error_msg, request_id}}) on stdout, the message on stderr, and exit 1, so that the
Rust test reads how the SDK understood the fake's error answer."""

import json
import sys


def sdk_client(client_class, endpoint, ak, sk, project_id):
    """A client of `client_class` (the SDK's ImsClient, CtsClient, ...) for the fake at
    `endpoint`, signing with AK/SK for the project, as a user would build one."""
    from huaweicloudsdkcore.auth.credentials import BasicCredentials

    return (
        client_class.new_builder()
        .with_credentials(BasicCredentials(ak, sk, project_id))
        .with_endpoint(endpoint)
        .build()
    )


def run(main):
    from huaweicloudsdkcore.exceptions import exceptions

    try:
        sys.exit(main(sys.argv))
    except exceptions.ServiceResponseException as e:
        json.dump(
            {
                "error": {
                    "status_code": e.status_code,
                    "error_code": e.error_code,
                    "error_msg": e.error_msg,
                    "request_id": e.request_id,
                }
            },
            sys.stdout,
        )
        print()
        print(str(e), file=sys.stderr)
        sys.exit(1)
