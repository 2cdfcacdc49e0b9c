"""Write backprop yourself: the workbook (:mod:`.workbook`, :mod:`.notebook`), the checker that names the
mistake (:mod:`.checker`, :mod:`.cases`, :mod:`.mistakes`) and the engine that trains with the learner's
functions (:mod:`.engine`)."""
