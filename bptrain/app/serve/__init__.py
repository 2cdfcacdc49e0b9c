"""`bptrain serve`'s server, one module a job.

    http        the routes, the limits, who may ask (Host, Origin), and every answer's status
    api         the JSON: requests read into checked values, answers made safe for a browser
    predictor   a network reading the page's digits: preprocessing, prediction, explain's numbers
    session     training from the page: one run at a time, its knobs and files (knows nothing of HTTP)
    live_run    one run in its thread, and the state the page sees of it
    form        the training form: its settings, presets, and the limits of what a page may start
    snapshots   what the page keeps of a run: float32 copies, kept epochs, weight tiles
    events      the event stream (Server-Sent Events) and each client's place in it
    errors      what the session refuses, as domain errors
"""
