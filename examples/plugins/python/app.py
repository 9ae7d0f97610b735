"""`Language` ESP service, written in Python (componentize-py).

Method `Detect`: parameter `Text` (a string) -> `Language` (ISO 639-1
code), `Confidence` (1-100) and `Scores` (a nested list: one integer score
per candidate language). The detector combines stop-word hits with
characters peculiar to each language; it needs no data files, so the
component needs no filesystem.

Built on the SDK in sdk/python (wasp_sdk). Faults (the host answers them
as ESP fault 3005 with ComponentFaultCode):
  2 missing parameter 'Text'
  3 'Text' is not a string
  4 no words in 'Text' (nothing to detect)
"""

import re

import wasp_sdk
from wasp_sdk import Fault, config, log

STOP_WORDS = {
    "en": """the and of to a in is it you that he was for on are with as his they be at
        one have this from or had by but not what all were we when your can said there
        use an each which she do how their if will up other about out many then them
        these so some her would make like him into time has look two more go see no
        could my than been who its now did get come made may part is are this please""",
    "de": """der die und in den von zu das mit sich des auf für ist im dem nicht ein eine
        als auch es an werden aus er hat dass sie nach wird bei einer um am sind noch
        wie einem über einen so zum war haben nur oder aber vor zur bis mehr durch man
        sein wurde sei ich mein bitte ihr wir kann können""",
    "fr": """le de un être et à il avoir ne je son que se qui ce dans en du elle au pour
        pas vous par sur faire plus dire me on mon lui nous comme mais pouvoir avec
        tout y aller voir bien où sans tu ou leur homme si deux mari moi vouloir te
        femme venir quand grand celui notre devoir là jour prendre même votre la les
        des est une sont merci""",
    "es": """el la de que y a en un ser se no haber por con su para como estar tener le
        lo todo pero más hacer o poder decir este ir otro ese si me ya ver porque dar
        cuando muy sin vez mucho saber qué sobre mi alguno mismo yo también hasta año
        dos querer entre así primero desde grande eso ni nos llegar pasar tiempo ella
        los las del es una gracias está son""",
    "it": """il di che e la a per un in è non una sono mi si con ho lo ma ti le io ha
        da cosa questo ci bene se al come del della mio più qui tu hai gli anche cosa
        sei solo molto era fatto dei nel alla loro sua suo grazie questa sono""",
}
STOP = {lang: set(words.split()) for lang, words in STOP_WORDS.items()}

# Characters that are strong hints for one language (each hit counts 2).
CHARS = {
    "en": "",
    "de": "äöüß",
    "fr": "çêèëîïôœùûâ",
    "es": "ñ¿¡áíóú",
    "it": "ìòù",
}
# Common letter sequences (each hit counts 1).
NGRAMS = {
    "en": ["th", "wh", "ing", "ght"],
    "de": ["sch", "ei", "ie", "ch", "ung"],
    "fr": ["eau", "oi", "ou", "qu'", "ez"],
    "es": ["ll", "ción", "ue", "ado"],
    "it": ["zione", "gli", "chi", "cc", "tt"],
}

WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


def scores(text):
    lowered = text.lower()
    words = WORD.findall(lowered)
    result = {}
    for lang in STOP:
        s = 4 * sum(1 for w in words if w in STOP[lang])
        s += 2 * sum(lowered.count(c) for c in CHARS[lang])
        s += sum(lowered.count(g) for g in NGRAMS[lang])
        result[lang] = s
    return words, result


def detect(text):
    """(language, confidence 1-100, scores) or None without words."""
    words, result = scores(text)
    if not words:
        return None
    ranked = sorted(result.items(), key=lambda kv: (-kv[1], kv[0]))
    best, top = ranked[0]
    second = ranked[1][1]
    total = sum(result.values())
    if top == 0:
        return (best, 1, result)
    # Share of the evidence, reduced when the runner-up is close.
    share = top / total
    margin = (top - second) / top
    confidence = round(100 * (0.5 * share + 0.5 * margin))
    return (best, max(1, min(100, confidence)), result)


class Service(wasp_sdk.Service):
    SERVICE_TYPE = "Language"
    VERSION = "1.0"
    METHODS = ["Detect"]

    def Detect(self, req):
        text = req.params.get_str("Text", missing_code=2, type_code=3)
        found = detect(text)
        if found is None:
            raise Fault(4, "parameter 'Text' has no words to detect a language from")
        lang, confidence, result = found
        # An optional cluster setting: answer "und" (undetermined) below it.
        if confidence < config.get_int("min-confidence", 0):
            lang = "und"
        log.debug("language detected", language=lang, confidence=confidence)
        return {"Language": lang, "Confidence": confidence, "Scores": dict(sorted(result.items()))}
