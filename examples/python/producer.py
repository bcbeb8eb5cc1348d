#!/usr/bin/env python3
"""Publishes member events to reco (a producer in another language).

    python producer.py --nats nats://127.0.0.1:4222 --member 7 --item 260 --kind play --value 5400
    python producer.py --member 7 --item 260 --item 1196 --kind play --value 600

Events are fire-and-forget publishes on ``<prefix>.events.<member>``: a
publish cannot tell whether a node is listening, and reco never replies to
an event. A bad event is counted by the node, logged, and copied to
``<prefix>.dlq.events`` with the reason in a header.
"""

import argparse
import asyncio
import sys
import time

import nats

import reco_wire


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server URL")
    p.add_argument("--prefix", default="reco", help="subject prefix (nats.prefix of the node)")
    p.add_argument("--member", type=int, required=True)
    p.add_argument("--item", type=int, action="append", required=True,
                   help="the item (repeat for several events)")
    p.add_argument("--kind", default="play", choices=reco_wire.EVENT_KINDS)
    p.add_argument("--value", type=float, default=0.0,
                   help="seconds watched (play/stop) or stars (rate)")
    p.add_argument("--device", default=None)
    return p.parse_args(argv)


async def main(argv) -> int:
    args = parse_args(argv)
    try:
        payloads = [
            reco_wire.encode_event(args.member, item, args.kind, args.value,
                                   at_ms=int(time.time() * 1000), device=args.device)
            for item in args.item
        ]
    except ValueError as e:
        print(f"producer: {e}", file=sys.stderr)
        return 1
    try:
        nc = await nats.connect(args.nats, connect_timeout=5, max_reconnect_attempts=0)
    except Exception as e:  # nats-py raises several types here
        print(f"producer: cannot connect to {args.nats}: {e}", file=sys.stderr)
        return 1
    subject = reco_wire.events_subject(args.prefix, args.member)
    for payload in payloads:
        await nc.publish(subject, payload)
    # flush() waits for the server's PONG: the events have reached the server.
    await nc.flush(timeout=5)
    await nc.close()
    print(f"published {len(payloads)} {args.kind} event(s) on {subject}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
