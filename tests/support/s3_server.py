"""A loopback S3 server (moto's server mode) for tensor2npy's remote-input tests: starts on a
free port, creates the bucket `t2n`, uploads each FILE under its KEY, prints the port, then
serves until standard input closes. Started and stopped by tests/outputs/remote.rs.

    python s3_server.py KEY=FILE ...
"""
import sys

import boto3
from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
s3 = boto3.client(
    "s3",
    endpoint_url="http://127.0.0.1:%d" % port,
    aws_access_key_id="test",
    aws_secret_access_key="test",
    region_name="us-east-1",
)
s3.create_bucket(Bucket="t2n")
for arg in sys.argv[1:]:
    key, _, file = arg.partition("=")
    s3.upload_file(file, "t2n", key)
print(port, flush=True)
sys.stdin.read()
server.stop()
