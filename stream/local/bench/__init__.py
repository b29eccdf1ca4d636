"""`anonstream bench`: the anonymize worker end to end through a real broker, beside a
ceiling (aiokafka + orjson, no work), a bare Faust agent and a peer written with Quix Streams,
all measured in the same run on the same generated traffic (issue 17); then the aggregate and
release stages on its output, and its latency at half its rate.

A laptop tool: production never imports it. Modules: `procfs` (CPU and memory of a process),
`kafkaio` (record batches sent, topics read back, committed offsets), `traffic` (generate,
batch, count, pre-fill), `peers` (the ceiling and Faust rows, run as
`python -m stream.local.bench.peers`), `quix_peer` (standalone, run by the bench virtualenv's
interpreter), `venv` (that virtualenv, `make bench-venv`), `rows` (one subprocess per row, its
figures), `stages` (the aggregate and release rows), `latency` (the latency row), `cli` (the
command and its table), `exceptions`.
"""
