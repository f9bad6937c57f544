"""The annotators' web app: ratings and pairwise battles."""
