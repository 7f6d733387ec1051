"""The operator's dashboard at /dashboard: server-rendered HTML, inline SVG charts, a little vanilla JavaScript."""
