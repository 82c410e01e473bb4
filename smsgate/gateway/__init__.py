"""The flow: SMSC -> inbox (stored, then acknowledged) -> router -> outbox (stored) -> SMSC.

The Gateway (core.py) builds these parts and wires them; each keeps its own state and calls the
others' methods:

- inbound.py, `InboundWriter`: the session's sink. One transaction a batch stores texts, parts
  of long texts and receipts, writes the acknowledgements and submit results pending, and routes
  at once what can be answered at once (БАЛАНС, ПОМОЩЬ), БАЛАНС of big batches read ahead by the
  reader process. Batches are stored in the order they came.
- processor.py, `Processor`: routes the other stored texts, one phone's after another, and
  commits their replies with the inbox states.
- sender.py, `OutboxQueue` and `Sender`: queued replies offered once each, submitted one message
  at a time per phone and many phones at once; parts in doubt after a restart settled first.
- results.py, `SubmitResults`: the SMSC's answers (and acknowledgements) until a commit writes
  them; every write of the gateway takes them inside its own transaction.
- receipts.py, `Receipts`: receipts after their batch is stored, receipts waiting for their part
  (orphans), parts in doubt settled by a receipt.
- flow.py, `FlowControl`: backpressure (replies unsent, the processor's backlog) and the phones
  whose texts wait their turn.
- in_turn.py, counters.py, addresses.py: one item after another per key, the counters, a
  deliver_sm's phone.

The loops (tasks started by Gateway.start):

- session (smsgate.smpp.SmppSession.run): the SMPP link; hands every batch read to
  InboundWriter.store_batch, then acknowledges it.
- processor (Processor.run): takes stored texts and routes them per phone.
- committer (Processor.commit_loop): writes what is routed, in group commits.
- outbox-scan (OutboxQueue.scan_loop): finds what others queued, on a wake-up or every second.
- sender (Sender.run): submits queued messages per phone.
- results (SubmitResults.run): group commits of submit results, then receipts that waited.
"""

from smsgate.gateway.core import Gateway
from smsgate.gateway.counters import Counters

__all__ = ["Counters", "Gateway"]
