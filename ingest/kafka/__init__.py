"""Kafka consuming adapter: device JSON from a park data platform's topics."""

from ingest.kafka.source import KafkaSource

__all__ = ["KafkaSource"]
