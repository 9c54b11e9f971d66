"""skipnas engine: data, model builder, training, studies, analysis, reports, export, CLI."""
