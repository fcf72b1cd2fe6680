"""Incremental detokenization with stop strings.

Never emits a partial UTF-8 character (the incremental decoder holds back an unfinished byte
sequence) nor any part of a stop string: text that could still grow into a stop string is held
back until it either completes one (then the sequence stops before it) or can no longer.
"""

from __future__ import annotations

import codecs


class IncrementalDetokenizer:
    def __init__(self, stop: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._held = ""  # decoded text not yet emitted (a possible stop-string prefix)
        self.text = ""  # everything emitted so far
        self.stopped = False

    def add(self, piece: bytes) -> str:
        """Feed one token's bytes; return the text that is now safe to emit."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(piece)
        if not self._stop:
            return self._release(len(self._held))
        hit = min((i for i in (self._held.find(s) for s in self._stop) if i >= 0), default=-1)
        if hit >= 0:
            self.stopped = True
            out = self._held[:hit]
            self._held = ""
            self.text += out
            return out
        return self._release(len(self._held) - self._partial_stop_len())

    def flush(self) -> str:
        """The sequence ended without a stop string: emit what was held back."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(b"", final=True)
        return self._release(len(self._held))

    def _partial_stop_len(self) -> int:
        """Length of the longest suffix of the held text that starts some stop string."""
        best = 0
        for s in self._stop:
            for k in range(min(len(s) - 1, len(self._held)), best, -1):
                if self._held.endswith(s[:k]):
                    best = k
                    break
        return best

    def _release(self, n: int) -> str:
        out, self._held = self._held[:n], self._held[n:]
        self.text += out
        return out
