#!/usr/bin/python3
"""Reference signer for test_net_sigv4: prints the SigV4 presigned /mqtt URL
that python3-awscrt (aws-c-auth, the CRT IoT SDKs' signer) produces.

usage: awscrt_presign.py HOST REGION ACCESS_KEY_ID SECRET TOKEN|- EPOCH_SECONDS
HOST is the endpoint, with ":port" when the port is not 443 (what the
signed host header and the URL carry).  The settings are those of
aws-iot-device-sdk-python-v2's websockets_with_default_aws_signing:
query-param signature, service iotdevicegateway, and omit_session_token
("IoT is weird and does not sign X-Amz-Security-Token"): aws-c-auth then adds
the token to the query unsigned.  Run by the test live, so the comparison is
always against the real signer; exits non-zero if awscrt is missing.
"""
import datetime
import sys

from awscrt import auth, http


def main(argv):
    if len(argv) != 7:
        sys.stderr.write(__doc__)
        return 2
    host, region, akid, secret, token, epoch = argv[1:]
    creds = auth.AwsCredentialsProvider.new_static(
        akid, secret, None if token == "-" else token)
    cfg = auth.AwsSigningConfig(
        algorithm=auth.AwsSigningAlgorithm.V4,
        signature_type=auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        credentials_provider=creds,
        region=region,
        service="iotdevicegateway",
        date=datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc),
        omit_session_token=True)
    req = http.HttpRequest("GET", "/mqtt",
                           headers=http.HttpHeaders([("host", host)]))
    auth.aws_sign_request(req, cfg).result(10)
    print("wss://" + host + req.path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
