"""``api.kafka.OffsetGaps``: a follower reads a partition again where a fetch stepped over a record
(Tansu 0.6 answers a fetch at a partition's end past a record still being produced; see
``bench.tansu_tail_reads``), and gives a gap up only after ``REREADS`` reads."""

from __future__ import annotations

from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY

from api.kafka import OffsetGaps

TP = TopicPartition("dm", 3)
OTHER = TopicPartition("dm", 4)


def records(tp: TopicPartition, *offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    """One partition's records at ``offsets``, each valued by its offset."""
    return [
        ConsumerRecord(tp.topic, tp.partition, o, 0, 0, None, str(o).encode(), None, 0, 0, ())
        for o in offsets
    ]


def offsets(found: list[ConsumerRecord[bytes, bytes]]) -> list[int]:
    """The offsets of ``found``."""
    return [r.offset for r in found]


def gaps(outcome: str) -> float:
    """The counter's value for the test topic."""
    return (
        REGISTRY.get_sample_value("sosohappy_kafka_offset_gaps_total", {"topic": "dm", "outcome": outcome})
        or 0.0
    )


def test_contiguous_records_pass_whole_and_the_first_read_sets_the_position() -> None:
    guard = OffsetGaps()
    assert offsets(guard.contiguous(TP, records(TP, 40, 41, 42))[0]) == [40, 41, 42]
    ready, reread = guard.contiguous(TP, records(TP, 43, 44))
    assert (offsets(ready), reread) == ([43, 44], None)


def test_a_jump_ends_the_batch_before_it_and_names_the_offset_to_read_again() -> None:
    guard, before = OffsetGaps(), gaps("reread")
    guard.contiguous(TP, records(TP, 10, 11))
    ready, reread = guard.contiguous(TP, records(TP, 12, 14, 15))
    assert (offsets(ready), reread) == ([12], 13)
    # Read again from 13: the record is there now; nothing is handed twice, nothing is missing.
    ready, reread = guard.contiguous(TP, records(TP, 13, 14, 15))
    assert (offsets(ready), reread) == ([13, 14, 15], None)
    assert gaps("reread") == before + 1


def test_a_jump_at_the_start_of_a_fetch_hands_nothing() -> None:
    guard = OffsetGaps()
    guard.contiguous(TP, records(TP, 5))
    assert guard.contiguous(TP, records(TP, 7, 8)) == ([], 6)


def test_offsets_that_start_again_lower_are_new_records_and_followed_from_there() -> None:
    """A position reset (the topic re-created, an out-of-range reset) starts the offsets again lower:
    those records are handed, not taken for repeats, and gaps are measured from them."""
    guard = OffsetGaps()
    guard.contiguous(TP, records(TP, 500, 501))
    assert guard.contiguous(TP, records(TP, 0, 1, 2)) == (records(TP, 0, 1, 2), None)
    assert guard.contiguous(TP, records(TP, 4)) == ([], 3)


def test_partitions_are_followed_apart() -> None:
    guard = OffsetGaps()
    guard.contiguous(TP, records(TP, 100))
    assert offsets(guard.contiguous(OTHER, records(OTHER, 7))[0]) == [7]
    assert guard.contiguous(TP, records(TP, 102)) == ([], 101)


def test_a_gap_still_there_after_every_reread_is_given_up_and_counted() -> None:
    guard, skipped = OffsetGaps(rereads=3), gaps("skipped")
    guard.contiguous(TP, records(TP, 20))
    for _ in range(3):
        assert guard.contiguous(TP, records(TP, 22, 23)) == ([], 21)
    ready, reread = guard.contiguous(TP, records(TP, 22, 23))
    assert (offsets(ready), reread) == ([22, 23], None)
    assert gaps("skipped") == skipped + 1
    # A later gap gets its own rereads.
    assert guard.contiguous(TP, records(TP, 25)) == ([], 24)


def test_a_new_connection_forgets_the_positions() -> None:
    guard = OffsetGaps()
    guard.contiguous(TP, records(TP, 50))
    guard.forget()
    assert offsets(guard.contiguous(TP, records(TP, 0, 1))[0]) == [0, 1]


class Seeks:
    """What ``take`` needs of a consumer: where it was sent back to."""

    def __init__(self) -> None:
        self.seeks: list[tuple[TopicPartition, int]] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_take_hands_the_ready_records_and_sends_the_consumer_back_to_the_missing_one() -> None:
    guard, consumer = OffsetGaps(), Seeks()
    assert offsets(guard.take(consumer, TP, records(TP, 7, 8))) == [7, 8]
    assert offsets(guard.take(consumer, TP, records(TP, 9, 11))) == [9]
    assert (consumer.seeks, guard.rereads) == ([(TP, 10)], 1)
    assert offsets(guard.take(consumer, TP, records(TP, 10, 11))) == [10, 11]
    assert (consumer.seeks, guard.rereads) == ([(TP, 10)], 1)
