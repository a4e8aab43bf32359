"""FinOps tools: advice from the paper's flowchart, and live spend reports."""
