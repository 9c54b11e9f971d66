"""The live dashboard: optuna-dashboard on a study's storage with skipnas' notes and plots
(`notes`), middlewares that rewrite some of its answers (`middleware`), and the server
(`server`)."""
