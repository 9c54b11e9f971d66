"""Results: the principle analysis, the HTML report, the live dashboard, and export."""
from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "analyze": ".analysis", "correlation_table": ".analysis", "template_table": ".analysis",
    "figures": ".report", "write_report": ".report", "write_png": ".report",
    "attach_plots": ".dashboard", "serve": ".dashboard",
    "trial_spec": ".export",
})
