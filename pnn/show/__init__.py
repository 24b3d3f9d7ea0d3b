"""Plots and tables: matplotlib/mplhep figures and Markdown/CSV tables from plain arrays."""
