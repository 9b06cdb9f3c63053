"""Reports to look at: a self-contained HTML page and a Chrome trace (Perfetto).

Drivers' layer: built from what the explorer and the recorder return, never
imported by them. ``_schedule`` turns a failing schedule into lanes and steps
with their source; ``_chrome`` writes that as Trace Event JSON; ``_page``
renders it as one HTML file with its CSS and JavaScript inline.
"""
