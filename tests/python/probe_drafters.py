"""Python drafters that probe the adapter (tests/python): SmoothedDrafter samples with real q and records it,
FeatureProbe records the target features it gets, TreeNgram proposes a tree."""
import numpy as np


class SmoothedDrafter:
    """Draws a chain from a fixed mixture of one token and the uniform, supplies that q, and records every
    (token, q[token]) it proposed, to compare with the verifier's log."""

    def __init__(self, env, favourite="13", weight="0.5"):
        self.V = env.vocab_size
        self.rng = np.random.default_rng([env.drafter_seed, env.request])
        q = np.full(self.V, (1.0 - float(weight)) / self.V)
        q[int(favourite)] += float(weight)
        self.q = q.astype(np.float32)  # what the verifier gets
        self.draw = self.q.astype(np.float64) / self.q.astype(np.float64).sum()  # the same law, for numpy's draw
        self.proposed = []  # (token, q[token]) per proposed node

    def begin(self, prompt, features):
        pass

    def accept(self, tokens, features):
        pass

    def propose(self, max_tokens):
        tokens = self.rng.choice(self.V, size=max_tokens, p=self.draw)
        self.proposed += [(int(t), float(self.q[t])) for t in tokens]
        return tokens.astype(np.int32), None, np.tile(self.q, (max_tokens, 1))


class FeatureProbe:
    """Asks for the target's final-norm state and layer 1's output, proposes nothing, and records the
    features begin and accept got (tests/python: they must be the forward's own states)."""

    def __init__(self, env):
        self.width = 2 * env.hidden_size
        self.got = []  # (call, tokens, features)

    def features(self):
        return {"final_norm": True, "layers": [1]}

    def begin(self, prompt, features):
        self.got.append(("begin", prompt.copy(), features))

    def accept(self, tokens, features):
        self.got.append(("accept", tokens.copy(), features))

    def propose(self, max_tokens):
        return [], None, None


class TreeNgram:
    """The Python n-gram's chain plus a sibling of its first token at the root (another token): a tree, to
    check that parents reach the verifier (tests/python)."""

    def __init__(self, env):
        from ngram_drafter import NgramDrafter
        self.chain = NgramDrafter(env)
        self.V = env.vocab_size

    def begin(self, prompt, features):
        self.chain.begin(prompt, features)

    def accept(self, tokens, features):
        self.chain.accept(tokens, features)

    def propose(self, max_tokens):
        tokens, _, _ = self.chain.propose(max_tokens - 1)
        if len(tokens) == 0:
            return tokens, None, None
        parents = list(range(-1, len(tokens) - 1)) + [-1]
        return list(tokens) + [(int(tokens[0]) + 1) % self.V], parents, None


class DeepTreeNgram(TreeNgram):
    """TreeNgram declaring how deep its trees reach: k nodes are a chain of k - 1 and a sibling at the root,
    k - 1 deep (the cost model prices a budget by this, tests/python)."""

    def proposal_depth(self, max_tokens):
        return max(max_tokens - 1, 0)
