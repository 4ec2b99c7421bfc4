"""Step 3a: measured throughput. How it is measured (settings, timing), on which device
(devices, the Ray actor that holds it), where figures are kept (store) and the throughput
model that predicts them for the feasibility screen.
"""
