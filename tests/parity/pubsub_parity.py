#!/usr/bin/env python3
"""Sharded pub/sub parity (Redis 7): SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH, PUBSUB SHARDCHANNELS
and SHARDNUMSUB, their confirmations, counts and `smessage` shapes, the subscribed-mode rule
and the separation from channel subscribers, sent to a real redis-server and to presenced and
compared byte for byte (the runner of transaction_parity.py, RESP2 and RESP3; a step `a?`
reads the next reply or pushed message without sending anything).

Usage: pubsub_parity.py --presenced-port N [--host H] [--redis-server PATH]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transaction_parity import run_all  # noqa: E402

SEQUENCES = {
    "ssubscribe confirmations and counts": [
        ("a", "SUNSUBSCRIBE"),
        ("a", "SSUBSCRIBE", "news:{1}", "news:{2}", "news:{1}"),
        ("a?",),
        ("a?",),
        ("a", "SUBSCRIBE", "plain"),
        ("a", "PSUBSCRIBE", "pl*"),
        ("a", "SSUBSCRIBE", "news:{3}"),
        ("a", "GET", "user:1:presence"),
        ("a", "PING"),
        ("a", "PING", "hello"),
        ("b", "PUBSUB", "SHARDNUMSUB", "news:{1}", "none"),
        ("b", "PUBSUB", "SHARDNUMSUB"),
        ("b", "PUBSUB", "SHARDCHANNELS", "news:{3*"),
        ("b", "PUBSUB", "SHARDCHANNELS", "nothing*"),
        ("b", "PUBSUB", "NUMSUB", "news:{1}"),
        ("b", "PUBSUB", "CHANNELS", "news*"),
        ("b", "PUBSUB", "SHARDCHANNELS", "a", "b"),
        ("b", "PUBSUB", "CHANNELS", "a", "b"),
        ("a", "SUNSUBSCRIBE", "news:{2}", "nope"),
        ("a?",),
        ("a", "UNSUBSCRIBE", "plain"),
        ("a", "PUNSUBSCRIBE", "pl*"),
        ("a", "SUNSUBSCRIBE", "news:{1}"),
        ("a", "SUNSUBSCRIBE", "news:{3}"),
        ("a", "SUNSUBSCRIBE"),
    ],
    "spublish reaches shard subscribers only": [
        ("a", "SSUBSCRIBE", "room:{7}"),
        ("b", "SUBSCRIBE", "room:{7}"),
        ("b", "PSUBSCRIBE", "room*"),
        ("c", "SPUBLISH", "room:{7}", "to shard"),
        ("a?",),
        ("c", "PUBLISH", "room:{7}", "to channel"),
        ("b?",),
        ("b?",),
        ("c", "SPUBLISH", "room:{8}", "to nobody"),
        ("a", "SUNSUBSCRIBE"),
        ("c", "SPUBLISH", "room:{7}", "gone"),
    ],
    "errors": [
        ("a", "SSUBSCRIBE"),
        ("a", "SPUBLISH", "only-channel"),
        ("a", "SPUBLISH", "c", "m", "extra"),
        ("a", "COMMAND", "GETKEYS", "SSUBSCRIBE", "x", "y"),
        ("a", "COMMAND", "GETKEYS", "SPUBLISH", "x", "m"),
        ("a", "MULTI"),
        ("a", "SSUBSCRIBE", "m:{1}"),
        ("a", "SPUBLISH", "m:{1}", "v"),
        ("a", "EXEC"),
        ("a", "PUBSUB", "HELP"),
    ],
}


def main():
    return run_all(SEQUENCES, "sharded pub/sub parity")


if __name__ == "__main__":
    sys.exit(main())
