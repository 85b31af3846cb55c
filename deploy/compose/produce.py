"""Produce the demo's seeded, drifting prediction events to a Kafka topic (Compose stack)."""

from __future__ import annotations

import argparse
import sys

import orjson
from confluent_kafka import Producer

from detector.demo import demo_streams
from detector.tuning.synthetic import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", default="predictions")
    parser.add_argument("--events", type=int, default=20_000, help="events per model")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    producer = Producer({"bootstrap.servers": args.bootstrap_servers, "linger.ms": 20})
    count = 0
    for spec in demo_streams(args.events, args.seed):
        for event in generate(spec):
            while True:
                try:
                    producer.produce(args.topic, key=spec.model.encode(), value=orjson.dumps(event))
                    break
                except BufferError:
                    producer.poll(0.1)
            count += 1
    if producer.flush(60) != 0:
        print("produce: not every event was delivered", file=sys.stderr)
        return 1
    print(f"produced {count} events to {args.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
