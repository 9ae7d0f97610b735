#!/usr/bin/env python3
"""Generates examples/classification/messages.tsv: labelled customer messages
for the bundled Classification service (Category<TAB>Split<TAB>Text).

Messages are built from phrase templates and fillers with a fixed seed, so
the file is reproducible; categories share vocabulary on purpose (orders,
accounts, money, products) so the model has to weigh words, not spot one.
The held-out split ("test") is made of whole templates the model never
sees in training (the last two of each category), so accuracy measures
unseen wording, not memorised sentences.
Run: python3 examples/classification/generate.py > examples/classification/messages.tsv
"""
import random

rng = random.Random(20261125)

products = ["router", "phone", "laptop", "headset", "smart watch", "tablet", "printer", "camera", "speaker", "monitor"]
months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
orders = lambda: f"order {rng.randint(10000, 99999)}"
amount = lambda: f"{rng.randint(5, 900)}.{rng.randint(0, 99):02d}"
days = lambda: str(rng.randint(2, 21))
openers = ["Hi,", "Hello,", "Good morning,", "Hey there,", "Dear support,", "", "", "Quick question:", "Hi team,"]
closers = ["Thanks.", "Thank you!", "Please help.", "Regards.", "", "", "Cheers", "Waiting for your reply."]

templates = {
    "Billing": [
        "I was charged twice for my {product} subscription in {month}",
        "my invoice for {month} shows {amount} but my plan costs less",
        "why did my monthly bill go up without notice",
        "please update the credit card on my account, the old one expired",
        "the direct debit failed and now there is a late fee on my account",
        "can I get a copy of the invoice for {order}",
        "there is an unknown charge of {amount} on my statement",
        "how do I change my billing address and payment method",
        "I paid the invoice but the account still says payment overdue",
        "the tax on my bill looks wrong for {month}",
        "you billed me for a plan I cancelled in {month}",
        "my card was declined although it has funds, please check the payment",
    ],
    "Delivery": [
        "my parcel never arrived, tracking says delivered",
        "where is my {order}? it has been {days} days",
        "the courier left the package at the wrong address",
        "tracking number for {order} is not working",
        "can you deliver my {product} to my office instead of home",
        "the delivery was delayed again, when will the {product} arrive",
        "package shows stuck in transit for {days} days",
        "I missed the delivery, how do I rebook a slot",
        "the box arrived crushed and opened",
        "shipping to my country is taking much longer than promised",
        "the driver never came although I stayed home all day",
        "part of my {order} is missing from the shipment",
    ],
    "Refund": [
        "I returned the {product} {days} days ago and still have no refund",
        "please refund {amount} for {order}, the item was faulty",
        "how long does a refund take to reach my card",
        "I want my money back for the cancelled {order}",
        "the return label does not work, I need to send the {product} back",
        "you promised a refund in {month} but nothing came",
        "refund the difference, the price dropped after I bought the {product}",
        "can I return an opened {product} and get a full refund",
        "I sent the parcel back, please confirm the return and refund",
        "the refund was only partial, {amount} is missing",
        "cancel my order and reimburse me please",
        "where is my refund for the returned {product}",
    ],
    "Technical": [
        "my {product} keeps restarting after the update",
        "the {product} does not connect to wifi anymore",
        "I cannot log in to the app, it says error 500",
        "the screen of my {product} stays black when I turn it on",
        "bluetooth pairing fails with my {product}",
        "the firmware update failed and now the {product} is stuck",
        "app crashes every time I open settings",
        "how do I reset my {product} to factory settings",
        "battery drains in two hours since the last update",
        "password reset email never arrives so I cannot sign in",
        "the {product} overheats and shuts down",
        "error code E{days} appears on the display",
    ],
    "Sales": [
        "do you have the new {product} in stock",
        "is there a discount if I buy five {product}s for my team",
        "what is the price of the premium plan per month",
        "I would like a quote for 20 {product}s for our company",
        "can I upgrade my plan and get the {product} bundle",
        "when does the {month} sale start",
        "which {product} do you recommend for video calls",
        "do you offer business pricing or volume discounts",
        "is the {product} available in black",
        "I want to buy a gift card worth {amount}",
        "compare the basic and pro plan features for me",
        "can I preorder the next {product} model",
    ],
    "Complaint": [
        "your customer service is terrible, nobody answers the phone",
        "I am very disappointed with how my case was handled",
        "this is the third time I write and nobody cares",
        "the agent was rude and hung up on me",
        "I want to speak to a manager about this unacceptable service",
        "I have been a customer for years and this treatment is shameful",
        "your chat kept me waiting for an hour, this is ridiculous",
        "I will leave a bad review if this is not fixed",
        "stop sending me spam emails, I unsubscribed in {month}",
        "the staff in your store ignored me completely",
        "I am fed up with broken promises from your company",
        "nobody followed up on my complaint about {order}",
    ],
}

def fill(t):
    return t.format(product=rng.choice(products), month=rng.choice(months), order=orders(),
                    amount=amount(), days=days())

HELD_OUT = 2  # templates per category used only for the test split

rows = []
for category, ts in templates.items():
    train_ts, test_ts = ts[:-HELD_OUT], ts[-HELD_OUT:]
    for n in range(80):
        split = "test" if n % 5 == 4 else "train"
        pool = test_ts if split == "test" else train_ts
        text = fill(pool[n % len(pool)])
        text = " ".join(x for x in [rng.choice(openers), text[0].upper() + text[1:] + ".", rng.choice(closers)] if x)
        rows.append((category, split, text))
rng.shuffle(rows)
for category, split, text in rows:
    print(f"{category}\t{split}\t{text}")
