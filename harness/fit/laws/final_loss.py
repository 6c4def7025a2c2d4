"""Final-loss laws over model size N (parameters) and training tokens D.

Every law here predicts the final loss of a run from a table with columns N and D (and C = 6ND
for the compute law, M = D/N for Gadre). They are fitted like every other law in the harness:
Huber(delta=1e-3) on log residuals, multi-start L-BFGS-B (harness/fit/fitter.py).

Why most laws are written in log space: the Chinchilla fit (Hoffmann et al. 2022; Besiroglu et
al. 2024) is done in the log-sum-exp parameterisation

    log L = LSE(a - alpha*log N, b - beta*log D, e),   A = e^a, B = e^b, E = e^e,

which keeps every amplitude positive without bounds and makes the objective well scaled whatever
the units of N and D. The other additive laws (Gadre, L(C)) use the same trick. `predict_log`
returns log L directly; `predict` exponentiates it.

Laws:
    ChinchillaLaw  L = E + A/N^alpha + B/D^beta                          (Hoffmann Approach 3)
    KaplanLaw      L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D          (Kaplan 2020, eq. 1.5)
    GadreLaw       L = E + (a*M^eta + b*M^-eta) * C^-eta,  M = D/N, C = 6ND (Gadre 2024)
    FarseerLaw     L = exp(a3 n^g + b3) + exp(a2 n^b + b2) * D^-exp(a1 n^a + b1)  (EXPERIMENTAL; class doc)
    ComputeLaw     L = E + A*C^-alpha, C = 6ND unless the table has C

plus the closed-form compute-optimal allocation of the Chinchilla law (`chinchilla_optimal`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from harness.fit.laws.base import Law, Param

# FLOPs per parameter per token for a dense transformer forward + backward pass (Kaplan 2020).
FLOPS_PER_PARAM_TOKEN = 6.0
# Bound on |log L| in `predict`; e^300 is far beyond any loss yet finite in float64.
_LOG_CLIP = 300.0


def unpack(theta: np.ndarray, n_params: int) -> tuple[Any, ...]:
    """Split theta into one value per parameter, ready to broadcast against data of shape (n,).

    theta (P,) gives P scalars, so predictions have shape (n,); theta (S, P) gives P columns of
    shape (S, 1), so predictions have shape (S, n) -- one row per start.
    """
    theta = np.asarray(theta, dtype=float)
    if theta.shape[-1] != n_params:
        raise ValueError(f"theta has {theta.shape[-1]} parameters, the law expects {n_params}")
    if theta.ndim == 1:
        return tuple(theta)
    if theta.ndim == 2:
        return tuple(theta[:, i : i + 1] for i in range(n_params))
    raise ValueError(f"theta must have shape (P,) or (S, P), got {theta.shape}")


def positive_column(table: Mapping[str, Any], column: str, law_name: str) -> np.ndarray:
    """The column as float64, with a clear error if it is missing, non-numeric or not > 0.

    `table` is a pandas DataFrame or any mapping of column name -> values.
    """
    if column not in table:
        raise ValueError(
            f"law {law_name!r} needs column {column!r}; the table has {list(table.keys())}"
        )
    values = pd.to_numeric(pd.Series(np.asarray(table[column]).ravel()), errors="coerce")
    values = values.to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(
            f"law {law_name!r}: column {column!r} must be finite and > 0 (bad rows {rows})"
        )
    return values


class FinalLossLaw(Law, ABC):
    """A law of the final loss over (N, D). Subclasses implement `predict_log`."""

    target = "loss"
    required_columns: tuple[str, ...] = ("N", "D")

    def prepare(self, table: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Log-inputs computed once, so scoring thousands of starts only does arithmetic."""
        n = positive_column(table, "N", self.name)
        d = positive_column(table, "D", self.name)
        return {"N": n, "D": d, "log_N": np.log(n), "log_D": np.log(d)}

    @abstractmethod
    def predict_log(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        """log of the predicted loss; shape (n,) for theta (P,), (S, n) for theta (S, P)."""

    def predict(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        # Clip log L so absurd parameters (an L-BFGS-B trial step at a corner of the box) give a
        # huge but finite residual rather than L = 0 or inf, which the fitter must score as +inf
        # and which stalls the line search.
        return np.exp(np.clip(self.predict_log(theta, data), -_LOG_CLIP, _LOG_CLIP))

    def log_gradient(self, theta: np.ndarray, data: Mapping[str, Any]
                     ) -> tuple[np.ndarray, np.ndarray] | None:
        """(log L (n,), d log L / d theta (n, P)) for one theta, or None for finite differences."""
        return None

    def jacobian(self, theta: np.ndarray, data: Mapping[str, Any]
                 ) -> tuple[np.ndarray, np.ndarray] | None:
        # Exact derivatives make each L-BFGS-B step one cheap evaluation instead of 2P + 1.
        out = self.log_gradient(np.asarray(theta, dtype=float), data)
        if out is None:
            return None
        log_l, grad = out
        pred = np.exp(np.clip(log_l, -_LOG_CLIP, _LOG_CLIP))
        jac = pred[:, None] * grad
        jac[np.abs(log_l) > _LOG_CLIP] = 0.0  # flat where predict clips
        return pred, jac


def _weights(total: np.ndarray, *terms: np.ndarray) -> list[np.ndarray]:
    """d LSE(terms) / d term_i = exp(term_i - LSE): the softmax weight of each term."""
    return [np.exp(t - total) for t in terms]


# --------------------------------------------------------------------------------------------
# Chinchilla Approach 3


class ChinchillaLaw(FinalLossLaw):
    """L = E + A/N^alpha + B/D^beta, fitted as log L = LSE(a - alpha log N, b - beta log D, e).

    The start grid is Hoffmann et al.'s (replicated by Besiroglu et al. 2024): alpha, beta in
    {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25} -- 4,500 starts. It does
    not depend on the data's scale: a and b absorb the units of N and D.
    """

    name = "chinchilla"
    params = (
        # Hoffmann's fit is unconstrained; these bounds only keep L-BFGS-B away from overflow and
        # are far outside any published fit (E ~ 1.7-1.9, alpha, beta ~ 0.3, a, b ~ 6-8).
        Param("e", -10.0, 5.0, (-1.0, -0.5, 0.0, 0.5, 1.0)),
        Param("a", -30.0, 100.0, (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)),
        Param("b", -30.0, 100.0, (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)),
        Param("alpha", 0.0, 3.0, (0.0, 0.5, 1.0, 1.5, 2.0)),
        Param("beta", 0.0, 3.0, (0.0, 0.5, 1.0, 1.5, 2.0)),
    )

    def predict_log(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        e, a, b, alpha, beta = unpack(theta, 5)
        n_term = a - alpha * data["log_N"]
        d_term = b - beta * data["log_D"]
        return np.logaddexp(np.logaddexp(n_term, d_term), e)

    def log_gradient(self, theta: np.ndarray, data: Mapping[str, Any]
                     ) -> tuple[np.ndarray, np.ndarray]:
        e, a, b, alpha, beta = theta
        n_term = a - alpha * data["log_N"]
        d_term = b - beta * data["log_D"]
        log_l = np.logaddexp(np.logaddexp(n_term, d_term), e)
        w_n, w_d, w_e = _weights(log_l, n_term, d_term, np.full_like(log_l, e))
        grad = np.stack([w_e, w_n, w_d, -w_n * data["log_N"], -w_d * data["log_D"]], axis=1)
        return log_l, grad

    def derived(self, theta: Sequence[float]) -> dict[str, float]:
        e, a, b, alpha, beta = (float(v) for v in theta)
        out = {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)),
               "alpha": alpha, "beta": beta}
        if alpha > 0 and beta > 0:
            # N_opt ∝ C^(beta/(alpha+beta)), D_opt ∝ C^(alpha/(alpha+beta)).
            out["N_opt_exponent"] = beta / (alpha + beta)
            out["D_opt_exponent"] = alpha / (alpha + beta)
        return out


@dataclass(frozen=True)
class Allocation:
    """Compute-optimal model size and tokens for a compute budget C (FLOPs), with C = 6 N D."""

    C: np.ndarray
    N_opt: np.ndarray
    D_opt: np.ndarray

    @property
    def tokens_per_param(self) -> np.ndarray:
        return self.D_opt / self.N_opt


def chinchilla_optimal(
    C: float | np.ndarray,
    A: float | np.ndarray,
    B: float | np.ndarray,
    alpha: float | np.ndarray,
    beta: float | np.ndarray,
) -> Allocation:
    """Closed-form minimiser of E + A/N^alpha + B/D^beta subject to 6 N D = C.

    Setting the derivative along the constraint to zero gives alpha A / N^alpha = beta B / D^beta,
    hence N_opt = G (C/6)^(beta/(alpha+beta)) and D_opt = (C/6)^(alpha/(alpha+beta)) / G with
    G = (alpha A / (beta B))^(1/(alpha+beta))   (Hoffmann et al. 2022, eq. 4).
    """
    C, A, B, alpha, beta = (np.asarray(v, dtype=float) for v in (C, A, B, alpha, beta))
    if np.any(alpha <= 0) or np.any(beta <= 0):
        raise ValueError("the allocation needs alpha > 0 and beta > 0")
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))  # (arrays broadcast: e.g. bootstrap)
    budget = C / FLOPS_PER_PARAM_TOKEN
    n_opt = G * budget ** (beta / (alpha + beta))
    d_opt = budget ** (alpha / (alpha + beta)) / G
    return Allocation(C=C, N_opt=n_opt, D_opt=d_opt)


def chinchilla_optimal_from_theta(theta: Sequence[float], C: float | np.ndarray) -> Allocation:
    """`chinchilla_optimal` from a fitted ChinchillaLaw theta (e, a, b, alpha, beta)."""
    p = ChinchillaLaw().derived(theta)
    return chinchilla_optimal(C, p["A"], p["B"], p["alpha"], p["beta"])


# --------------------------------------------------------------------------------------------
# Kaplan et al. 2020


class KaplanLaw(FinalLossLaw):
    """L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D   (Kaplan et al. 2020, eq. 1.5).

    There is no irreducible term, as in the paper. Parameterised by log N_c and log D_c, so
        log L = alpha_D * LSE((alpha_N/alpha_D)(log N_c - log N), log D_c - log D).
    Kaplan's values (non-embedding N): alpha_N 0.076, alpha_D 0.095, N_c 8.8e13, D_c 5.4e13.
    The grid spans the exponents of LM fits and N_c, D_c from e^10 to e^40 (log L ~ alpha log
    (N_c/N) means small exponents need large N_c).
    """

    name = "kaplan"
    params = (
        Param("log_Nc", -20.0, 250.0, (10.0, 20.0, 30.0, 40.0)),
        Param("log_Dc", -20.0, 250.0, (10.0, 20.0, 30.0, 40.0)),
        Param("alpha_N", 1e-3, 3.0, (0.05, 0.1, 0.2, 0.4)),
        Param("alpha_D", 1e-3, 3.0, (0.05, 0.1, 0.2, 0.4)),
    )

    def predict_log(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        log_nc, log_dc, alpha_n, alpha_d = unpack(theta, 4)
        n_term = (alpha_n / alpha_d) * (log_nc - data["log_N"])
        d_term = log_dc - data["log_D"]
        return alpha_d * np.logaddexp(n_term, d_term)

    def log_gradient(self, theta: np.ndarray, data: Mapping[str, Any]
                     ) -> tuple[np.ndarray, np.ndarray]:
        log_nc, log_dc, alpha_n, alpha_d = theta
        n_gap = log_nc - data["log_N"]
        n_term = (alpha_n / alpha_d) * n_gap
        d_term = log_dc - data["log_D"]
        lse = np.logaddexp(n_term, d_term)
        w_n, w_d = _weights(lse, n_term, d_term)
        grad = np.stack([w_n * alpha_n, w_d * alpha_d, w_n * n_gap, lse - w_n * n_term], axis=1)
        return alpha_d * lse, grad

    def derived(self, theta: Sequence[float]) -> dict[str, float]:
        log_nc, log_dc, alpha_n, alpha_d = (float(v) for v in theta)
        return {"N_c": float(np.exp(log_nc)), "D_c": float(np.exp(log_dc)),
                "alpha_N": alpha_n, "alpha_D": alpha_d}


# --------------------------------------------------------------------------------------------
# Gadre et al. 2024 (over-training)


class GadreLaw(FinalLossLaw):
    """L(C, M) = E + (a M^eta + b M^-eta) C^-eta with M = D/N (tokens per parameter), C = 6ND.

    Fitted as log L = LSE(log_E, log_a + eta log M - eta log C, log_b - eta log M - eta log C).
    Substituting C = 6 N^2 M shows this is E + a 6^-eta N^-2eta + b 6^-eta D^-2eta: Chinchilla
    with one shared exponent 2 eta. The official code (mlfoundations/scaling, `powlaw_ours`)
    writes alpha N^p + beta 6^(p/2) (MN)^p + E with p = -2 eta, a = alpha 6^eta, b = beta;
    `derived` reports both. The grid covers Gadre's curve_fit starts (amplitudes 1e2-3e3,
    eta 0.05-0.15, E 0-2) and wider exponents.
    """

    name = "gadre"
    params = (
        Param("log_E", -10.0, 5.0, (-1.0, 0.0, 0.5, 1.0)),
        Param("log_a", -30.0, 100.0, (0.0, 5.0, 10.0, 15.0, 20.0)),
        Param("log_b", -30.0, 100.0, (0.0, 5.0, 10.0, 15.0, 20.0)),
        Param("eta", 0.0, 2.0, (0.05, 0.1, 0.2, 0.3)),
    )

    def prepare(self, table: Mapping[str, Any]) -> dict[str, np.ndarray]:
        data = super().prepare(table)
        # Gadre's variables: token multiplier M = D/N and compute C = 6ND.
        data["log_M"] = data["log_D"] - data["log_N"]
        data["log_C"] = np.log(FLOPS_PER_PARAM_TOKEN) + data["log_N"] + data["log_D"]
        return data

    def predict_log(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        log_e, log_a, log_b, eta = unpack(theta, 4)
        log_m, log_c = data["log_M"], data["log_C"]
        over = log_a + eta * log_m - eta * log_c
        under = log_b - eta * log_m - eta * log_c
        return np.logaddexp(np.logaddexp(over, under), log_e)

    def log_gradient(self, theta: np.ndarray, data: Mapping[str, Any]
                     ) -> tuple[np.ndarray, np.ndarray]:
        log_e, log_a, log_b, eta = theta
        log_m, log_c = data["log_M"], data["log_C"]
        over = log_a + eta * (log_m - log_c)
        under = log_b - eta * (log_m + log_c)
        log_l = np.logaddexp(np.logaddexp(over, under), log_e)
        w_o, w_u, w_e = _weights(log_l, over, under, np.full_like(log_l, log_e))
        d_eta = w_o * (log_m - log_c) - w_u * (log_m + log_c)
        return log_l, np.stack([w_e, w_o, w_u, d_eta], axis=1)

    def derived(self, theta: Sequence[float]) -> dict[str, float]:
        log_e, log_a, log_b, eta = (float(v) for v in theta)
        a, b = float(np.exp(log_a)), float(np.exp(log_b))
        return {
            "E": float(np.exp(log_e)), "a": a, "b": b, "eta": eta,
            # The parameterisation of the official code: alpha N^p + beta 6^(p/2) (MN)^p + E.
            "code_alpha": a * 6.0 ** (-eta), "code_beta": b, "code_p": -2.0 * eta,
        }


# --------------------------------------------------------------------------------------------
# Farseer (Li et al. 2025, arXiv:2506.10972)


class FarseerLaw(FinalLossLaw):
    """EXPERIMENTAL. L(N, D) = exp(a3 n^gamma + b3) + exp(a2 n^beta + b2) * D^(-exp(a1 n^alpha + b1)).

    What is known (paper text, arXiv:2506.10972, via a secondary review; the authors' repository
    Farseer-Scaling-Law/Farseer could not be read here):
      * the decomposition L = E + U(N) + V(D) + H(N, D), with the data-dependent part modelled as
        V + H = B(N) * D^(-A(N)): finite differences L(N, D) - L(N, lambda D) follow a power law in D
        whose coefficient and exponent depend on N;
      * the fit is "Differential Piecewise Fitting" in stages -- per N, estimate A_N and B_N from the
        D-dependence; then fit A(N) and B(N) as smooth functions of N; then E + U(N) from what is
        left -- followed by "multi-round iterative" refinement.
    What is guessed (shared/notes/ANCHORS-FITTING.md §5 marks it "[memory — verify]"):
      * the closed forms A(N) = exp(a1 n^alpha + b1), B(N) = exp(a2 n^beta + b2) and
        E + U(N) = exp(a3 n^gamma + b3);
      * n = N / N_REF with N_REF = 1e9 (keeps n^gamma O(1)); D raw;
      * the refinement: one joint Huber-on-log fit started from the staged estimate (`staged_start`)
        and from the grid, instead of the paper's rounds.
    Nine parameters need many (N, D) points: at least 3 D values at each of at least 3 N. With
    fewer, the staged start is skipped and the fit usually lands on a bound, which the CLI refuses
    (harness/fit/fit_checks.py). Extrapolating in N far beyond the fitted sizes is where it fails.
    """

    name = "farseer"
    N_REF = 1e9
    params = (
        Param("a1", -20.0, 20.0, (-0.2, 0.2)),        # exponent of D: A(N) = exp(a1 n^alpha + b1)
        Param("b1", -10.0, 3.0, (-1.5, -0.8)),
        Param("alpha", -2.0, 2.0, (-0.3, 0.3)),
        Param("a2", -20.0, 20.0, (-1.0, 0.0, 1.0)),   # coefficient of D: B(N) = exp(a2 n^beta + b2)
        Param("b2", -30.0, 100.0, (2.0, 5.0, 8.0)),
        Param("beta", -2.0, 2.0, (-0.3, 0.3)),
        Param("a3", -20.0, 20.0, (0.2, 1.0)),         # E + U(N) = exp(a3 n^gamma + b3)
        Param("b3", -10.0, 5.0, (0.0, 0.5, 1.0)),
        Param("gamma", -2.0, 2.0, (-0.5, -0.2)),
    )

    def prepare(self, table: Mapping[str, Any]) -> dict[str, np.ndarray]:
        data = super().prepare(table)
        data["n"] = data["N"] / self.N_REF
        return data

    # Each smooth function of N (A, B, E + U) has 3 parameters; 5 distinct model sizes leave 2
    # degrees of freedom to check them against. Sizes within 10% count as one (read off a plot).
    MIN_SIZES = 5

    def identifiability_problems(self, data: Mapping[str, Any]) -> list[str]:
        """Why these points cannot determine the law (read by harness/fit/fit_checks.py)."""
        log_n = np.sort(np.log(np.unique(data["N"])))
        sizes = 1 + int(np.sum(np.diff(log_n) > np.log(1.1))) if log_n.size else 0
        if sizes >= self.MIN_SIZES:
            return []
        return [f"law 'farseer' needs at least {self.MIN_SIZES} distinct model sizes to determine how its D "
                f"exponent, D coefficient and N term vary with N (3 parameters each); the fit set has {sizes}. "
                "Fix: add model sizes, or use 'gadre' or 'chinchilla' (fewer parameters)"]

    def starts(self, data: Mapping[str, Any], y: np.ndarray) -> np.ndarray:
        grid = self.initial_grid()
        staged = staged_farseer_start(data["n"], data["D"], y, self.bounds)
        return grid if staged is None else np.vstack([staged[None, :], grid])

    def predict_log(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        a1, b1, alpha, a2, b2, beta, a3, b3, gamma = unpack(theta, 9)
        n = data["n"]
        d_exponent = np.exp(a1 * n**alpha + b1)
        log_data_term = a2 * n**beta + b2 - d_exponent * data["log_D"]
        log_model_term = a3 * n**gamma + b3
        return np.logaddexp(log_model_term, log_data_term)

    def log_gradient(self, theta: np.ndarray, data: Mapping[str, Any]
                     ) -> tuple[np.ndarray, np.ndarray]:
        a1, b1, alpha, a2, b2, beta, a3, b3, gamma = theta
        n, log_n, log_d = data["n"], np.log(data["n"]), data["log_D"]
        n_alpha, n_beta, n_gamma = n**alpha, n**beta, n**gamma
        d_exponent = np.exp(a1 * n_alpha + b1)
        data_term = a2 * n_beta + b2 - d_exponent * log_d
        model_term = a3 * n_gamma + b3
        log_l = np.logaddexp(model_term, data_term)
        w_m, w_d = _weights(log_l, model_term, data_term)
        # d data_term / d (a1, b1, alpha) all go through the D exponent.
        via_exponent = -w_d * d_exponent * log_d
        grad = np.stack([
            via_exponent * n_alpha, via_exponent, via_exponent * a1 * n_alpha * log_n,
            w_d * n_beta, w_d, w_d * a2 * n_beta * log_n,
            w_m * n_gamma, w_m, w_m * a3 * n_gamma * log_n,
        ], axis=1)
        return log_l, grad


def _offset_power_law(log_d: np.ndarray, loss: np.ndarray) -> tuple[float, float, float] | None:
    """(c, log B, A) of loss = c + B D^-A at one N: a grid over A, least squares for (c, B) at each
    (linear once A is fixed), keeping c > 0 and B > 0. None when no A gives both positive."""
    best = None
    for a in np.geomspace(0.02, 2.0, 120):
        x = np.exp(-a * (log_d - log_d.mean()))  # centred: B is the coefficient at the mean log D
        design = np.column_stack([np.ones_like(x), x])
        (c, b), *_ = np.linalg.lstsq(design, loss, rcond=None)
        if c <= 0 or b <= 0:
            continue
        sse = float(np.sum((design @ (c, b) - loss) ** 2))
        if best is None or sse < best[0]:
            best = (sse, c, np.log(b) + a * log_d.mean(), a)
    return None if best is None else best[1:]


def _exp_power_in_n(n: np.ndarray, log_target: np.ndarray) -> tuple[float, float, float]:
    """(a, b, p) of log_target ~ a n^p + b: a grid over p, linear least squares for (a, b)."""
    best = None
    for p in np.linspace(-1.5, 1.5, 61):
        if abs(p) < 1e-9:
            continue
        x = n**p
        design = np.column_stack([x, np.ones_like(x)])
        (a, b), *_ = np.linalg.lstsq(design, log_target, rcond=None)
        sse = float(np.sum((design @ (a, b) - log_target) ** 2))
        if best is None or sse < best[0]:
            best = (sse, a, b, p)
    return best[1:]


def staged_farseer_start(n: np.ndarray, d: np.ndarray, loss: np.ndarray,
                         bounds: Sequence[tuple[float, float]]) -> np.ndarray | None:
    """Farseer's staged fit as a start for the joint one (see FarseerLaw's doc; the smooth forms
    in N are our guess). Stage 1: per N with >= 3 distinct D, loss = c_N + B_N D^-A_N. Stage 2:
    log A_N and log B_N as a n^p + b across N. Stage 3: log c_N (= log(E + U(N))) the same way.
    None when fewer than 3 model sizes have 3 distinct D values."""
    per_n = []
    for value in np.unique(n):
        sel = n == value
        if np.unique(d[sel]).size < 3:
            continue
        fit = _offset_power_law(np.log(d[sel]), np.asarray(loss, float)[sel])
        if fit is not None:
            per_n.append((value, *fit))
    if len(per_n) < 3:
        return None
    ns, c, log_b, a = (np.array(col) for col in zip(*per_n))
    a1, b1, alpha = _exp_power_in_n(ns, np.log(a))
    a2, b2, beta = _exp_power_in_n(ns, log_b)
    a3, b3, gamma = _exp_power_in_n(ns, np.log(c))
    theta = np.array([a1, b1, alpha, a2, b2, beta, a3, b3, gamma])
    lo, hi = np.array(bounds, dtype=float).T
    return np.clip(theta, lo, hi)


# --------------------------------------------------------------------------------------------
# Loss against compute


class ComputeLaw(FinalLossLaw):
    """L(C) = E + A C^-alpha, fitted as log L = LSE(e, a - alpha log C).

    C is the table's C column when present (FLOPs), else 6 N D. This is the law of the compute-
    optimal frontier; fitted on runs off the frontier it describes their average trend only.
    """

    name = "compute"
    # The CLI checks N and D; `prepare` uses a C column instead of 6ND when the table has one
    # (and, through the Python API, accepts a table with C alone).
    required_columns: tuple[str, ...] = ("N", "D")
    params = (
        Param("e", -10.0, 5.0, (-1.0, -0.5, 0.0, 0.5, 1.0)),
        Param("a", -30.0, 200.0, (0.0, 5.0, 10.0, 15.0, 20.0)),
        Param("alpha", 0.0, 3.0, (0.02, 0.05, 0.1, 0.2, 0.4)),
    )

    def prepare(self, table: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if "C" in table:
            c = positive_column(table, "C", self.name)
        elif "N" in table and "D" in table:
            c = FLOPS_PER_PARAM_TOKEN * positive_column(table, "N", self.name) * positive_column(
                table, "D", self.name
            )
        else:
            raise ValueError(
                f"law 'compute' needs column 'C' (FLOPs) or columns 'N' and 'D' (C = 6ND); "
                f"the table has {list(table.keys())}"
            )
        return {"C": c, "log_C": np.log(c)}

    def predict_log(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        e, a, alpha = unpack(theta, 3)
        return np.logaddexp(a - alpha * data["log_C"], e)

    def log_gradient(self, theta: np.ndarray, data: Mapping[str, Any]
                     ) -> tuple[np.ndarray, np.ndarray]:
        e, a, alpha = theta
        c_term = a - alpha * data["log_C"]
        log_l = np.logaddexp(c_term, e)
        w_c, w_e = _weights(log_l, c_term, np.full_like(log_l, e))
        return log_l, np.stack([w_e, w_c, -w_c * data["log_C"]], axis=1)

    def derived(self, theta: Sequence[float]) -> dict[str, float]:
        e, a, alpha = (float(v) for v in theta)
        return {"E": float(np.exp(e)), "A": float(np.exp(a)), "alpha": alpha}


FINAL_LOSS_LAWS: dict[str, type[FinalLossLaw]] = {
    law.name: law for law in (ChinchillaLaw, KaplanLaw, GadreLaw, FarseerLaw, ComputeLaw)
}
