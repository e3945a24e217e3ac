"""Distribution statistics, warnings, drift, charts and the HTML reports of `prefsmith inspect` and
`prefsmith eval`. Loads no model."""
