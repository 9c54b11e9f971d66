"""Results: the principle analysis (one study, and across depths), the HTML report, the live
dashboard, export, and the reports of benchmarks, fidelity studies and zero-cost proxies. The
names below are the public surface; each is imported on first use."""
from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers
    from .analysis import (
        Analysis,
        PrincipleTest,
        analyze,
        confirmed_table,
        correlation_table,
        evidence_lines,
        regression_caption,
        regression_table,
        template_table,
    )
    from .bench_report import (
        regret_figure,
        replay_bench,
        strategy_table,
        table_figure,
        write_replay,
        zero_cost_table,
    )
    from .dashboard.notes import attach_plots
    from .dashboard.server import serve
    from .depth import depth_figure, depth_summary, depth_table
    from .export import Choice, trial_spec
    from .fidelity_summary import FidelityReport, fidelity_report, study_time, write_fidelity
    from .proxies_report import load_batch, proxy_report, score_patterns, write_proxies
    from .report import figures, publish_study, write_png, write_report

__getattr__, __all__ = lazy_exports(__name__, {
    "Analysis": ".analysis", "PrincipleTest": ".analysis", "analyze": ".analysis",
    "confirmed_table": ".analysis", "correlation_table": ".analysis",
    "evidence_lines": ".analysis", "regression_caption": ".analysis",
    "regression_table": ".analysis", "template_table": ".analysis",
    "regret_figure": ".bench_report", "replay_bench": ".bench_report",
    "strategy_table": ".bench_report", "table_figure": ".bench_report",
    "write_replay": ".bench_report", "zero_cost_table": ".bench_report",
    "attach_plots": ".dashboard.notes", "serve": ".dashboard.server",
    "depth_figure": ".depth", "depth_summary": ".depth", "depth_table": ".depth",
    "Choice": ".export", "trial_spec": ".export",
    "FidelityReport": ".fidelity_summary", "fidelity_report": ".fidelity_summary",
    "study_time": ".fidelity_summary", "write_fidelity": ".fidelity_summary",
    "load_batch": ".proxies_report", "proxy_report": ".proxies_report",
    "score_patterns": ".proxies_report", "write_proxies": ".proxies_report",
    "figures": ".report", "publish_study": ".report", "write_png": ".report",
    "write_report": ".report",
})
