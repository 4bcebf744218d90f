"""Council votes (决议): convene, count poll answers, close once, tell everyone.

The poll ↔ candidate mapping and every answer live here, so a restart loses nothing and
counting goes on. Closing is claimed in the database with a compare-and-set on the vote's
status, so with several replicas (and the scheduler and an early close racing) each vote is
closed, tallied and announced exactly once. Results go out through the outbox in the same
transaction; the sender draws the bar chart from the counts in `vote_result`'s params.

Who voted how is kept (Ballot) for officials (vote_detail); the public side (the audit
events on the board, results in the groups) carries counts and outcomes only.

Sending a poll is not idempotent: when Telegram's answer to a sendPoll is lost, the poll may
exist all the same. So every sendPoll is claimed before it is made (record_poll_attempt: a
CouncilPollSend row, SENDING), and its outcome written after: the poll recorded (record_poll,
SENT), refused (record_send_error, REFUSED: safe to send again) or unknown
(record_send_uncertain, UNCERTAIN: never sent again automatically, the convener told what to
check). An answer to a poll the store does not know (an orphan of such a send, or one whose
record_poll has not committed yet) is kept (CouncilStrayAnswer), not dropped, and counted once
the poll is known: by record_poll, or by recognise_poll when Telegram shows the bot the poll (a
`poll` update carries its question, which names the candidate).

Where each part lives (everything is used from here, as `council.<name>`):
- `convening`: convene;
- `sending`: where the polls go, each send claimed (record_poll_attempt) and its failures
  (record_send_error, record_send_uncertain), the sends' states, record_poll_stopped;
- `counting`: an answer to a known poll counted, everyone_voted;
- `strays`: polls the store does not know, and the two ways answers reach the store that
  count the ones kept for such a poll: record_poll and record_answer; recognise_poll,
  prune_strays;
- `closing`: the votes due, the poll-sending lease, close_vote and the results announced;
- `reading`: open votes, a voter's choices, vote detail for officials, closed results;
- `common`: what several of them share (the roles, get_vote, the tally, a vote's audit
  events and followers' notices). It imports none of the others; `strays` builds on
  `sending` and `counting`, `closing` on `counting`.
The names used as `council.<name>` that `__all__` leaves out (as it always did) are
re-exported explicitly (`name as name`).
"""

from __future__ import annotations

from storage.services.council.closing import POLL_SENDING_LEASE as POLL_SENDING_LEASE
from storage.services.council.closing import (
    CloseResult,
    close_vote,
    due_vote_ids,
    result_params,
)
from storage.services.council.closing import claim_poll_sending as claim_poll_sending
from storage.services.council.closing import finish_poll_sending as finish_poll_sending
from storage.services.council.closing import votes_with_unsent_polls as votes_with_unsent_polls
from storage.services.council.common import CONVENE_ROLES as CONVENE_ROLES
from storage.services.council.common import DETAIL_ROLES as DETAIL_ROLES
from storage.services.council.common import get_vote
from storage.services.council.convening import ConveneRequest, convene
from storage.services.council.counting import AnswerResult, everyone_voted
from storage.services.council.reading import (
    BallotView,
    VoteDetail,
    closed_results,
    list_votes,
    my_choices,
    open_votes_for,
    vote_detail,
    vote_details,
)
from storage.services.council.sending import POLL_RECOGNISED as POLL_RECOGNISED
from storage.services.council.sending import POLL_SEND_FAILED as POLL_SEND_FAILED
from storage.services.council.sending import POLL_SEND_UNCERTAIN as POLL_SEND_UNCERTAIN
from storage.services.council.sending import SEND_ERROR_MAX as SEND_ERROR_MAX
from storage.services.council.sending import UNCERTAIN_PREFIX as UNCERTAIN_PREFIX
from storage.services.council.sending import UNSETTLED as UNSETTLED
from storage.services.council.sending import (
    delivery_chats,
    poll_sends,
    record_poll_attempt,
    record_poll_stopped,
    record_send_error,
    record_send_uncertain,
    unsettled_poll_sends,
)
from storage.services.council.sending import held_poll_lease as held_poll_lease
from storage.services.council.sending import release_poll_attempt as release_poll_attempt
from storage.services.council.sending import release_poll_lease as release_poll_lease
from storage.services.council.stopping import POLL_STOPPING_LEASE as POLL_STOPPING_LEASE
from storage.services.council.stopping import POLL_STOPPING_WINDOW as POLL_STOPPING_WINDOW
from storage.services.council.stopping import claim_poll_stopping as claim_poll_stopping
from storage.services.council.stopping import (
    votes_with_running_polls as votes_with_running_polls,
)
from storage.services.council.strays import STRAY_RETENTION as STRAY_RETENTION
from storage.services.council.strays import (
    RecognisedPoll,
    prune_strays,
    recognise_poll,
    record_answer,
    record_poll,
)

__all__ = [
    "AnswerResult",
    "BallotView",
    "CloseResult",
    "ConveneRequest",
    "RecognisedPoll",
    "VoteDetail",
    "close_vote",
    "closed_results",
    "convene",
    "delivery_chats",
    "due_vote_ids",
    "everyone_voted",
    "get_vote",
    "list_votes",
    "my_choices",
    "open_votes_for",
    "poll_sends",
    "prune_strays",
    "recognise_poll",
    "record_answer",
    "record_poll",
    "record_poll_attempt",
    "record_poll_stopped",
    "record_send_error",
    "record_send_uncertain",
    "result_params",
    "unsettled_poll_sends",
    "vote_detail",
    "vote_details",
]
