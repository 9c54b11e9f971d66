"""Results: the principle analysis (one study, and across depths), the HTML report, the live
dashboard, and export."""
from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "analyze": ".analysis", "Analysis": ".analysis", "PrincipleTest": ".analysis",
    "correlation_table": ".analysis", "template_table": ".analysis",
    "depth_summary": ".depth", "depth_table": ".depth", "depth_figure": ".depth",
    "figures": ".report", "write_report": ".report", "write_png": ".report",
    "publish_study": ".report",
    "attach_plots": ".dashboard.notes", "serve": ".dashboard.server",
    "trial_spec": ".export",
    "proxy_report": ".proxies_report", "write_proxies": ".proxies_report",
})
