"""Tree ensembles as SQL expressions, for the compiled scoring path (`pipeline.model.compiled`).

A fitted tree is a nest of comparisons; as `CASE WHEN slot <= threshold THEN … ELSE … END` over the
feature slots it runs in Spark's generated code, with no feature vector built per row. This module
reads the fitted trees — MLlib's decision trees, random forests and gradient-boosted trees (their
nodes, through the JVM model), and XGBoost's boosters (their JSON dump) — and writes each
ensemble's score in the arithmetic of the library that fitted it:

- MLlib: a continuous split sends `x <= threshold` left, a categorical split sends the listed
  category indices left; NaN goes right in both (as `<=` and `IN` are false for NaN in the JVM and
  in SQL). A classification tree's leaf gives its class frequencies; a random forest sums each
  tree's normalised frequencies and normalises the sum; a GBT's margin is the weighted sum of its
  trees' leaf values and its positive-class probability is `1 - 1 / (1 + exp(2 * margin))`.
- XGBoost: a split sends `float(x) < threshold` to `yes` and NaN to `missing`; leaf values and the
  base margin are summed in single precision, as XGBoost's predictor does, and a logistic
  objective takes the sigmoid.

`check_against_transform` still compares every compiled model with `transform` before it is
trusted; the XGBoost check uses a single-precision tolerance.
"""

from __future__ import annotations

import functools
import json
import math
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F

# Beyond this many nodes the expression outgrows what code generation compiles into one method,
# and Spark falls back to interpreting it: slower than `transform`, so such a model is not compiled.
MAX_NODES = 20_000
XGBOOST_TOLERANCE = 1e-6  # single-precision sums (relative to the score's size, at least 1)


class TreeUnsupportedError(Exception):
    """A tree model without a compiled form; the message says why."""


@dataclass(frozen=True)
class Leaf:
    value: float  # the leaf's prediction (a class index for an MLlib classification tree)
    stats: tuple[float, ...] = ()  # an MLlib classification leaf's class counts


@dataclass(frozen=True)
class Split:
    feature: int
    left: Node  # MLlib: the left child; XGBoost: the `yes` child
    right: Node
    threshold: float | None = None  # continuous split
    categories: tuple[float, ...] = ()  # an MLlib categorical split's left categories
    missing_left: bool = False  # XGBoost: NaN goes to the `yes` child


Node = Leaf | Split


def features_used(trees: list[Node]) -> list[int]:
    """The feature slots the trees read, in order."""
    found: set[int] = set()

    def walk(node: Node) -> None:
        if isinstance(node, Split):
            found.add(node.feature)
            walk(node.left)
            walk(node.right)

    for tree in trees:
        walk(tree)
    return sorted(found)


def node_count(trees: list[Node]) -> int:
    def count(node: Node) -> int:
        return 1 + (count(node.left) + count(node.right) if isinstance(node, Split) else 0)

    return sum(count(t) for t in trees)


# ------------------------------------------------------------------------------------------------
# Reading the fitted trees
# ------------------------------------------------------------------------------------------------


def mllib_trees(model: Any, *, with_stats: bool) -> list[Node]:
    """The trees of an MLlib tree model (a single tree, or an ensemble's trees), read node by node
    from the JVM model. `with_stats` reads the class counts of the leaves (classification)."""
    java = getattr(model, "_java_obj", None)
    if java is None:
        # Over Spark Connect the fitted model lives on the server, with no node API in Python.
        raise TreeUnsupportedError(f"the nodes of {type(model).__name__} are not readable here")
    members = model.trees if hasattr(model, "trees") else [model]
    return [_mllib_node(t._java_obj.rootNode(), with_stats) for t in members]


def _mllib_node(node: Any, with_stats: bool) -> Node:
    if node.numDescendants() == 0:
        stats = tuple(float(s) for s in node.impurityStats().stats()) if with_stats else ()
        return Leaf(float(node.prediction()), stats)
    split = node.split()
    kind = split.getClass().getSimpleName()
    left, right = (
        _mllib_node(node.leftChild(), with_stats),
        _mllib_node(node.rightChild(), with_stats),
    )
    if kind == "ContinuousSplit":
        return Split(int(split.featureIndex()), left, right, threshold=float(split.threshold()))
    if kind == "CategoricalSplit":
        cats = tuple(sorted(float(c) for c in split.leftCategories()))
        return Split(int(split.featureIndex()), left, right, categories=cats)
    raise TreeUnsupportedError(f"an MLlib split of kind {kind}")


def xgboost_trees(booster: Any) -> tuple[list[Node], float, str]:
    """(trees, base margin, objective) of an XGBoost booster, from its JSON dump and config."""
    config = json.loads(booster.save_config())
    learner = config["learner"]
    objective = learner["objective"]["name"]
    if int(learner["learner_model_param"].get("num_class", "0")) > 1:
        raise TreeUnsupportedError("a multi-class XGBoost model")
    if learner["gradient_booster"]["name"] != "gbtree":
        raise TreeUnsupportedError(f"an XGBoost {learner['gradient_booster']['name']} booster")
    base = _base_score(learner["learner_model_param"]["base_score"])
    if objective == "binary:logistic":
        # The stored base score is a probability; the predictor starts from its logit.
        margin = math.log(base / (1.0 - base))
    elif objective in ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror"):
        margin = base
    else:
        raise TreeUnsupportedError(f"the XGBoost objective {objective}")
    trees = [_xgboost_node(json.loads(dump)) for dump in booster.get_dump(dump_format="json")]
    return trees, margin, objective


def _base_score(text: str) -> float:
    # XGBoost 3 stores it as a one-element vector ("[5E-1]"); older versions as a number.
    values = json.loads(text) if text.startswith("[") else [float(text)]
    if len(values) != 1:
        raise TreeUnsupportedError("an XGBoost model with several base scores")
    return float(values[0])


def _xgboost_node(node: dict[str, Any]) -> Node:
    if "leaf" in node:
        return Leaf(float(node["leaf"]))
    if "split_condition" not in node or not str(node["split"]).startswith("f"):
        raise TreeUnsupportedError("an XGBoost split that is not numeric on an unnamed feature")
    children = {c["nodeid"]: _xgboost_node(c) for c in node["children"]}
    return Split(
        int(str(node["split"])[1:]),
        children[node["yes"]],
        children[node["no"]],
        threshold=float(node["split_condition"]),
        missing_left=node["missing"] == node["yes"],
    )


# ------------------------------------------------------------------------------------------------
# Writing the expressions
# ------------------------------------------------------------------------------------------------


def tree_expression(
    node: Node, slot: Callable[[int], Column], leaf: Callable[[Leaf], Column], *, xgboost: bool
) -> Column:
    """The tree as nested CASE WHENs over the slots, each leaf given by `leaf`."""
    if isinstance(node, Leaf):
        return leaf(node)
    x = slot(node.feature)
    left = tree_expression(node.left, slot, leaf, xgboost=xgboost)
    right = tree_expression(node.right, slot, leaf, xgboost=xgboost)
    if xgboost:
        assert node.threshold is not None
        value = x.cast("float")
        # NaN (or null) goes to `missing`; a value to `yes` when below the single-precision
        # threshold, compared in single precision as XGBoost reads its inputs.
        test = F.when(F.isnan(value) | value.isNull(), F.lit(node.missing_left)).otherwise(
            value < F.lit(node.threshold).cast("float")
        )
        return F.when(test, left).otherwise(right)
    if node.threshold is not None:
        test = x <= F.lit(node.threshold)
    else:
        test = x.isin(*[F.lit(c) for c in node.categories])
    # A null comparison (never produced by the slots, which carry NaN) also goes right.
    return F.when(test, left).otherwise(right)


def _sum(terms: Iterator[Column] | list[Column]) -> Column:
    return functools.reduce(operator.add, terms)


def mllib_score(
    model: Any, slot: Callable[[int], Column], *, classification: bool
) -> tuple[Column, list[int]]:
    """The score of an MLlib tree model over the slots, and the slots it reads."""
    from pyspark.ml.classification import (
        DecisionTreeClassificationModel,
        GBTClassificationModel,
        RandomForestClassificationModel,
    )
    from pyspark.ml.regression import (
        DecisionTreeRegressionModel,
        GBTRegressionModel,
        RandomForestRegressionModel,
    )

    probabilistic = (DecisionTreeClassificationModel, RandomForestClassificationModel)
    is_classifier = isinstance(model, (*probabilistic, GBTClassificationModel))
    if is_classifier != classification:
        raise TreeUnsupportedError(f"a {type(model).__name__} does not score this task")
    if isinstance(model, probabilistic) and model.numClasses != 2:
        raise TreeUnsupportedError("only a two-class tree classifier compiles")
    trees = mllib_trees(model, with_stats=isinstance(model, probabilistic))
    _check_size(trees)

    def expr(tree: Node, leaf: Callable[[Leaf], Column]) -> Column:
        return tree_expression(tree, slot, leaf, xgboost=False)

    used = features_used(trees)
    if isinstance(model, probabilistic):
        # Per tree, the leaf's class frequencies normalised (a leaf of no weight votes nothing);
        # the probability is the summed vote for class 1 over the summed votes, as MLlib divides.
        def share(c: int) -> Callable[[Leaf], Column]:
            return lambda leaf: F.lit(leaf.stats[c] / sum(leaf.stats) if sum(leaf.stats) else 0.0)

        ones = _sum([expr(t, share(1)) for t in trees])
        zeros = _sum([expr(t, share(0)) for t in trees])
        return ones / (zeros + ones), used
    values = [expr(t, lambda leaf: F.lit(leaf.value)) for t in trees]
    if isinstance(model, (GBTClassificationModel, GBTRegressionModel)):
        weights = [float(w) for w in model.treeWeights]
        margin = _sum([F.lit(w) * v for w, v in zip(weights, values, strict=True)])
        if isinstance(model, GBTClassificationModel):
            # MLlib's log loss: p0 = 1 / (1 + exp(2 * margin)), p1 = 1 - p0.
            return F.lit(1.0) - F.lit(1.0) / (F.lit(1.0) + F.exp(F.lit(2.0) * margin)), used
        return margin, used
    if isinstance(model, RandomForestRegressionModel):
        return _sum(values) / F.lit(float(len(values))), used
    if isinstance(model, DecisionTreeRegressionModel):
        return values[0], used
    raise TreeUnsupportedError(f"no compiled form for {type(model).__name__}")


def xgboost_score(
    model: Any, slot: Callable[[int], Column], *, classification: bool
) -> tuple[Column, list[int]]:
    """The score of a fitted `xgboost.spark` model over the slots, and the slots it reads."""
    trees, margin, objective = xgboost_trees(model.get_booster())
    if (objective == "binary:logistic") != classification:
        raise TreeUnsupportedError(f"the XGBoost objective {objective} does not score this task")
    _check_size(trees)
    total: Column = F.lit(margin).cast("float")
    for tree in trees:
        value = tree_expression(
            tree, slot, lambda leaf: F.lit(leaf.value).cast("float"), xgboost=True
        )
        total = (total + value).cast("float")  # single precision, tree by tree
    if classification:
        score = (F.lit(1.0) / (F.lit(1.0) + F.exp(-total))).cast("float")
        return score.cast("double"), features_used(trees)
    return total.cast("double"), features_used(trees)


def _check_size(trees: list[Node]) -> None:
    nodes = node_count(trees)
    if nodes > MAX_NODES:
        raise TreeUnsupportedError(
            f"{nodes} tree nodes (more than {MAX_NODES} do not compile into fast code)"
        )
