"""Python drafters that break the contract, one way each (tests/python): each must be a one-line error
naming what is wrong."""
import numpy as np


class NoPropose:
    def __init__(self, env):
        pass

    def begin(self, prompt, features):
        pass

    def accept(self, tokens, features):
        pass


class BadIds(NoPropose):
    """Proposes a token id past the vocabulary."""

    def __init__(self, env):
        self.V = env.vocab_size

    def propose(self, max_tokens):
        return np.array([self.V + 7]), None, None


class BadQShape(BadIds):
    """q with one column too few."""

    def propose(self, max_tokens):
        return np.array([1]), None, np.full((1, self.V - 1), 1.0 / (self.V - 1), dtype=np.float32)


class NotATuple(BadIds):
    def propose(self, max_tokens):
        return [1, 2]


class WrongVocab(BadIds):
    """Declares a vocabulary other than the target's."""

    def __init__(self, env):
        self.vocab_size = env.vocab_size + 1


class Raises(BadIds):
    def propose(self, max_tokens):
        raise KeyError("no such n-gram")


class TooDeep(BadIds):
    """Declares a proposal deeper than its node budget."""

    def proposal_depth(self, max_tokens):
        return max_tokens + 5
