from mcp_agg.cli import main

main()
