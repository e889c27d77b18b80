"""Sets up and reads back the local Kinesis emulator for packaging/windows/cross-build.

    kinesis-check.py ENDPOINT wait-ready
    kinesis-check.py ENDPOINT create STREAM
    kinesis-check.py ENDPOINT expect STREAM FILE

`expect` waits until the stream holds exactly the lines of FILE, in order, and fails with what
is missing or extra otherwise.
"""

import sys
import time

import boto3

DEADLINE_SECONDS = 90


def client(endpoint):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="cross-build",
        aws_secret_access_key="cross-build",
    )


def wait_ready(kinesis):
    deadline = time.monotonic() + 20
    while True:
        try:
            kinesis.list_streams()
            return
        except Exception as error:  # noqa: BLE001 - not listening yet
            if time.monotonic() > deadline:
                sys.exit(f"kinesalite did not answer: {error}")
            time.sleep(0.2)


def create(kinesis, stream):
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )


def records(kinesis, stream):
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    lines = []
    while True:
        batch = kinesis.get_records(ShardIterator=iterator, Limit=10000)
        if not batch["Records"]:
            return lines
        lines.extend(record["Data"].decode() for record in batch["Records"])
        iterator = batch["NextShardIterator"]


def expect(kinesis, stream, path):
    with open(path, encoding="utf-8") as file:
        wanted = file.read().splitlines()
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        got = [line.rstrip("\r\n") for line in records(kinesis, stream)]
        if got == wanted:
            print(f"{stream}: all {len(wanted)} lines arrived, in order, once each")
            return
        if len(got) > len(wanted) or time.monotonic() > deadline:
            missing = len([line for line in wanted if line not in set(got)])
            sys.exit(
                f"{stream}: {len(got)} records for {len(wanted)} lines "
                f"({missing} lines missing); first records: {got[:3]}"
            )
        time.sleep(0.5)


def main():
    endpoint, action, *rest = sys.argv[1:]
    kinesis = client(endpoint)
    if action == "wait-ready":
        wait_ready(kinesis)
    elif action == "create":
        create(kinesis, *rest)
    elif action == "expect":
        expect(kinesis, *rest)
    else:
        sys.exit(f"unknown action {action}")


if __name__ == "__main__":
    main()
