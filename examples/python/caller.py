#!/usr/bin/env python3
"""Asks reco for a member's recommendations (a caller in another language).

    python caller.py --nats nats://127.0.0.1:4222 --member 7 --k 5
    python caller.py --member 7 --json

Follows the caller's rule of the wire contract: request/reply on
``<prefix>.recommend.<member>``; on "no responders" or a timeout, one try on
``<prefix>.fallback.recommend.<member>``; if nothing answers there either,
exit with status 2 and say so.

Exit status: 0 with a list, 1 when reco refused the request (its error
code and message are printed) or the server is unreachable, 2 when no node
answered.
"""

import argparse
import asyncio
import dataclasses
import json
import sys

import nats

import reco_wire


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server URL")
    p.add_argument("--prefix", default="reco", help="subject prefix (nats.prefix of the node)")
    p.add_argument("--member", type=int, required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--deadline-ms", type=int, default=50,
                   help="how long reco may take before its fallback answers")
    p.add_argument("--row", default=None,
                   help="top (default), genre:<name>, because:<item id>, continue, popular, new")
    p.add_argument("--device", default=None)
    p.add_argument("--include-seen", action="store_true",
                   help="keep items the member already watched")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    return p.parse_args(argv)


async def main(argv) -> int:
    args = parse_args(argv)
    try:
        nc = await nats.connect(args.nats, connect_timeout=5, max_reconnect_attempts=0)
    except Exception as e:  # nats-py raises several types here
        print(f"caller: cannot connect to {args.nats}: {e}", file=sys.stderr)
        return 1
    try:
        reply = await reco_wire.recommend(
            nc, args.prefix, args.member, k=args.k, deadline_ms=args.deadline_ms,
            row=args.row, device=args.device,
            exclude_seen=False if args.include_seen else None, details=True,
            log=lambda m: print(f"caller: {m}", file=sys.stderr),
        )
    except reco_wire.RecoError as e:
        print(f"caller: {e}", file=sys.stderr)
        return 1
    except reco_wire.NobodyAnswered as e:
        print(f"caller: {e}", file=sys.stderr)
        return 2
    finally:
        await nc.close()
    if args.json:
        print(json.dumps(dataclasses.asdict(reply)))
        return 0
    why = f", {reply.reason}" if reply.degraded else ""
    print(f"member {reply.member}: {len(reply.items)} items of row {reply.row} from {reply.source}{why} "
          f"(model {reply.model_version}, served in {reply.served_us} µs, via {reply.subject})")
    for rank, item in enumerate(reply.items, 1):
        title = (reply.titles or {}).get(item["item"], "")
        print(f"{rank:>3}. item {item['item']:<10} score {item['score']:.4f}  {title}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
