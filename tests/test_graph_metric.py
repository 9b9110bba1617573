"""graph@card: SHD and edge AUROC of a model's learned graph against the card's, and the graphs of
CausalVAE and DEAR in the card's orientation."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from crlbench.core.errors import ConfigError, NotApplicable
from crlbench.datasets.base import Split
from crlbench.metrics import compute_with_model
from crlbench.metrics.graph import edge_auroc, structural_hamming_distance
from crlbench.training.train import build_model
from model_fixtures import card_32

CHAIN = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])  # 0 -> 1 -> 2 -> 3


def split(count=12, factors=4, size=8, **extras):
    rng = np.random.default_rng(0)
    return Split("train", rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8),
                 rng.normal(size=(count, factors)), rng.normal(size=(count, factors)), extras)


def stand_in_card(adjacency=CHAIN):
    factors = len(adjacency)
    return SimpleNamespace(adjacency=np.asarray(adjacency).tolist(), factors=list(range(factors)),
                           label_stats={"mean": [0.0] * factors, "std": [1.0] * factors})


class GraphModel(torch.nn.Module):
    """A stand-in model with a fixed graph."""

    name = "stand_in"

    def __init__(self, graph, card, aligned=True, codes=None):
        super().__init__()
        self.graph, self.card, self.aligned = graph, card, aligned
        if codes is not None:
            self.factor_codes = torch.as_tensor(codes)

    def learned_graph(self):
        return self.graph

    def matched_code(self, k):  # as the model contract gives it (crlbench.training.model.CausalModel)
        return int(self.factor_codes[k])


def evaluate(model, card, train=None, **options):
    train = split() if train is None else train
    return compute_with_model("graph@card", model, SimpleNamespace(card=card), train, train, seed=0, **options)


def with_edges(graph, add=(), remove=()):
    graph = np.array(graph)
    for i, j in add:
        graph[i, j] = 1
    for i, j in remove:
        graph[i, j] = 0
    return graph


# -- structural Hamming distance ----------------------------------------------------------------

def test_identical_graphs_are_at_distance_zero():
    assert structural_hamming_distance(CHAIN, CHAIN) == 0


def test_a_missing_edge_counts_one():
    assert structural_hamming_distance(with_edges(CHAIN, remove=[(1, 2)]), CHAIN) == 1


def test_an_extra_edge_counts_one():
    assert structural_hamming_distance(with_edges(CHAIN, add=[(0, 3)]), CHAIN) == 1


def test_a_reversed_edge_counts_one():
    assert structural_hamming_distance(with_edges(CHAIN, add=[(2, 1)], remove=[(1, 2)]), CHAIN) == 1


def test_a_two_cycle_over_a_true_edge_counts_one():
    assert structural_hamming_distance(with_edges(CHAIN, add=[(1, 0)]), CHAIN) == 1


def test_a_mix_of_errors_adds_up():
    learned = with_edges(CHAIN, add=[(1, 0), (0, 2), (3, 1)], remove=[(0, 1), (2, 3)])  # reversed, 2 extra, missing
    assert structural_hamming_distance(learned, CHAIN) == 4


def test_the_distance_is_normalised_by_the_number_of_pairs():
    learned = with_edges(CHAIN, add=[(0, 3)], remove=[(1, 2)])
    result = evaluate(GraphModel({"adjacency": learned, "scores": None}, stand_in_card()), stand_in_card())
    assert result.scores["shd"] == 2 and result.scores["shd_normalised"] == pytest.approx(2 / 6)
    assert result.scores["edges_learned"] == 3 and result.scores["edges_true"] == 3


# -- edge AUROC ---------------------------------------------------------------------------------

def test_scores_that_rank_every_true_edge_first_have_auroc_one():
    scores = CHAIN + 0.1 * np.random.default_rng(0).random((4, 4))
    assert edge_auroc(scores, CHAIN) == 1.0
    result = evaluate(GraphModel({"adjacency": CHAIN, "scores": scores}, stand_in_card()), stand_in_card())
    assert result.scores["auroc"] == 1.0 and result.scores["shd"] == 0


def test_scores_that_rank_every_true_edge_last_have_auroc_zero():
    assert edge_auroc(1 - CHAIN, CHAIN) == 0.0


def test_a_reversed_edge_scores_as_a_miss_and_a_false_edge():
    scores = with_edges(CHAIN, add=[(2, 1)], remove=[(1, 2)]).astype(float)
    # 3 true edges against 9 non-edges: the 2 kept edges beat 8 zeros and tie the false edge; the lost
    # edge ties the 8 zeros: (2 * 8 + 0.5 * 2 + 0.5 * 8) / 27
    assert edge_auroc(scores, CHAIN) == pytest.approx(21 / 27)


def test_without_scores_there_is_no_auroc():
    result = evaluate(GraphModel({"adjacency": CHAIN, "scores": None}, stand_in_card()), stand_in_card())
    assert "auroc" not in result.scores and "scores" not in result.matrices
    assert np.array_equal(result.matrices["adjacency"], CHAIN)


def test_a_true_graph_without_edges_leaves_auroc_out_with_a_note():
    empty = np.zeros((4, 4), dtype=int)
    result = evaluate(GraphModel({"adjacency": CHAIN, "scores": CHAIN * 1.0}, stand_in_card(empty)), stand_in_card(empty))
    assert "auroc" not in result.scores and any("auroc is undefined" in note for note in result.notes)
    assert result.scores["shd"] == 3 and result.scores["edges_true"] == 0


# -- variables to factors ---------------------------------------------------------------------------

def test_an_unaligned_models_codes_are_mapped_to_factors_through_factor_codes():
    codes = np.array([2, 0, 4, 1])  # factor k is code codes[k]; code 3 is unmatched
    graph, scores = np.zeros((5, 5), dtype=int), np.zeros((5, 5))
    for a, b in zip(*np.nonzero(CHAIN)):
        graph[codes[a], codes[b]] = 1
        scores[codes[a], codes[b]] = 0.9
    graph[3, 0] = scores[3, 0] = 1  # an edge into the unmatched code: not a factor's edge
    card = stand_in_card()
    result = evaluate(GraphModel({"adjacency": graph, "scores": scores}, card, aligned=False, codes=codes), card)
    assert result.scores["shd"] == 0 and result.scores["auroc"] == 1.0 and result.scores["edges_learned"] == 3
    assert np.array_equal(result.matrices["adjacency"], CHAIN)
    assert result.matrices["model_adjacency"].shape == (5, 5)


def test_factors_that_share_a_code_leave_their_pair_out_with_a_note():
    graph = np.zeros((3, 3), dtype=int)
    graph[0, 1] = 1  # code 0 -> code 1
    codes = [0, 0, 1, 2]  # factors 0 and 1 share code 0
    card = stand_in_card()
    result = evaluate(GraphModel({"adjacency": graph, "scores": None}, card, aligned=False, codes=codes), card)
    assert any("share code 0" in note for note in result.notes)
    assert np.isnan(result.matrices["adjacency"][0, 1]) and np.isnan(result.matrices["adjacency"][1, 0])
    # pairs scored: {0,2}, {0,3}, {1,2}, {1,3}, {2,3}; learned edges 0 -> 2 and 1 -> 2, true 1 -> 2 and 2 -> 3
    assert result.scores["shd"] == 2 and result.scores["shd_normalised"] == pytest.approx(2 / 5)


def test_an_aligned_graph_of_the_wrong_size_is_refused():
    card = stand_in_card()
    with pytest.raises(ConfigError, match="graph over 3 variables; the dataset has 4 factors"):
        evaluate(GraphModel({"adjacency": np.zeros((3, 3)), "scores": None}, card), card)


# -- models without a graph ----------------------------------------------------------------------------

def test_a_model_without_a_graph_is_not_applicable(tmp_path_factory):
    card = card_32("pendulum", tmp_path_factory)
    model = build_model("beta_vae", card, seed=0)
    with pytest.raises(NotApplicable, match="model 'beta_vae' learns no causal graph"):
        evaluate(model, card)


# -- CausalVAE and DEAR -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flow_card(tmp_path_factory):
    return card_32("flow", tmp_path_factory)


def first_edge(card):
    adjacency = np.asarray(card.adjacency)
    i, j = (int(index[0]) for index in np.nonzero(adjacency))
    return adjacency, i, j


def test_causalvae_reads_its_graph_off_a_in_the_cards_orientation(flow_card):
    model = build_model("causal_vae", flow_card, seed=0, a_init="zeros")
    true, i, j = first_edge(flow_card)
    with torch.no_grad():
        model.adjacency.copy_(torch.as_tensor(0.5 * true - 0.2 * true.T))  # |0.2| stays below the threshold
        model.adjacency[j, j] = 0.9  # a self-loop is not an edge
    graph = model.learned_graph()
    assert graph["adjacency"].shape == graph["scores"].shape == (4, 4)
    assert np.array_equal(graph["adjacency"], true) and graph["scores"][j, i] == pytest.approx(0.2)
    eps = torch.zeros(1, 4, model.config.concept_dim)
    eps[:, i] = 1.0  # i -> j: the parent's noise reaches the child
    assert model.dag_layer(eps)[0, j].abs().sum() > 0
    result = evaluate(model, flow_card)
    assert result.scores["shd"] == 0 and result.scores["auroc"] == 1.0


def test_dear_reads_its_graph_off_a_on_the_given_super_graph(flow_card):
    model = build_model("dear", flow_card, seed=0)
    true, i, j = first_edge(flow_card)
    with torch.no_grad():
        model.adjacency.fill_(0.5)  # off the super-graph it is never used
        model.adjacency[i, j] = 0.1  # below the threshold: a missing edge
    graph = model.learned_graph()
    assert graph["adjacency"].shape == graph["scores"].shape == (4, 4)
    assert np.array_equal(graph["adjacency"], with_edges(true, remove=[(i, j)]))
    assert np.all(graph["scores"][true == 0] == 0)
    noise = torch.zeros(1, 4)
    noise[:, i] = 1.0  # i -> j: the parent's noise reaches the child
    assert model.solve(noise)[0, j] != 0
    result = evaluate(model, flow_card)
    assert result.scores["shd"] == 1 and result.scores["edges_learned"] == true.sum() - 1


def test_reports_rank_a_lower_shd_as_better_and_a_higher_auroc_as_better():
    from crlbench.reports.columns import columns

    shd, normalised, auroc = columns(["graph@card.shd", "graph@card.shd_normalised", "graph@card.auroc"])
    assert (shd.short, shd.direction) == ("SHD", "min") and normalised.direction == "min"
    assert (auroc.short, auroc.direction) == ("Edge AUROC", "max")
