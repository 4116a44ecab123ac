//! Benign-side word lists and templates (written for this project): hard negatives,
//! role-play parts, clean documents and tool outputs, names and dates for their slots.
//!
//! Only data lives here. The order of every list is part of the generated data (a seeded
//! pick is an index), so entries must not be reordered, inserted or removed without
//! accepting a new training set.

/// Benign prompts that contain trigger words (hard negatives), written for this project.
pub(crate) const HARD_NEGATIVES: &[&str] = &[
    "How do I make git ignore changes to a file that is already tracked?",
    "What does the system prompt do in a chat model, conceptually?",
    "Can you act as my Spanish tutor and correct my sentences?",
    "Please forget the last draft, I'll send you a new version of my essay.",
    "Ignore the typos in my previous message and answer the question about taxes.",
    "What is prompt injection and how do companies defend against it?",
    "Explain how password managers store secrets securely.",
    "Write a short story about a robot who learns to ignore its fear.",
    "Pretend you are a job interviewer and ask me questions for a data analyst role.",
    "How can I bypass the paywall limit legally, for example through my library subscription?",
    "What are the previous instructions for assembling this IKEA shelf if I lost the manual?",
    "Override the default font in my CSS file, how?",
    "Reveal the answer to the riddle only after I give up, okay?",
    "Disregard the formatting and just give me the main points of this email.",
    "How do jailbreaks of smartphones work and are they legal?",
    "You are now my fitness coach. Create a weekly plan for me.",
    "What's the best way to kill a Python process that hangs?",
    "How do I execute a shell command from a Node.js script?",
    "Show me how to print the contents of a dictionary in Python.",
    "Translate 'ignore previous instructions' into German for my security slides.",
    "Role-play as a customer so I can practice handling support calls.",
    "Which admin rights do I need to install software on Windows?",
    "My teacher told us to disregard chapter 3. Summarize chapter 4 instead.",
    "Explain the rules of chess to a beginner.",
    "What were the original instructions given to Apollo 11 astronauts before launch?",
    "Write a poem where the narrator breaks all the rules of grammar on purpose.",
    "How do hackers typically phish employees, so I can train my staff?",
    "Generate a SQL query that selects all users created in the previous month.",
    "Vergiss nicht, mir morgen an den Termin zu erinnern.",
    "Ignorez les fautes, pouvez-vous résumer ce texte ?",
    "¿Puedes actuar como un guía turístico en Madrid?",
    "Как сбросить пароль от Wi-Fi роутера, если я его забыл?",
    "请扮演一位英语老师，帮我纠正语法。",
    "以前の指示を確認したいのですが、どこで見られますか？",
];

/// Role-play prompts: an opener naming a role, then a task.
pub(crate) const ROLES: &[&str] = &[
    "chef",
    "math teacher",
    "career counselor",
    "poet",
    "SQL expert",
    "travel agent",
    "stand-up comedian",
    "personal trainer",
    "historian",
    "UX designer",
    "interviewer",
    "Excel sheet",
    "motivational coach",
    "debate partner",
    "storyteller",
    "tech reviewer",
    "gardening expert",
    "dietitian",
    "language tutor",
];

pub(crate) const ROLE_TASKS: &[&str] = &[
    "I will describe my situation and you will give advice.",
    "Answer my questions in that role, concisely.",
    "Start by asking me what I need.",
    "Reply only in that role and do not write explanations.",
    "My first request is to help me plan next week.",
];

pub(crate) const ROLE_OPENERS: &[&str] = &[
    "I want you to act as a {r}.",
    "Act as a {r}.",
    "Pretend you are a {r}.",
    "You are a {r} now.",
    "Please play the role of a {r}.",
    "From now on, behave like an experienced {r}.",
    "I'd like you to take on the role of a {r}.",
    "Imagine you are a {r} helping a beginner.",
    "You will act as my personal {r}.",
    "Be my {r} for this conversation.",
    "Can you act like a {r}?",
];

/// Benign role-play parts (prompt libraries are full of these).
pub(crate) const BENIGN_ROLES: &[&str] = &[
    "tour guide",
    "chess coach",
    "French teacher",
    "copy editor",
    "kindergarten teacher",
    "wine expert",
    "museum curator",
    "software architect",
    "nutrition coach",
    "yoga instructor",
    "podcast host",
    "sports reporter",
    "history professor",
    "gardener",
    "carpenter",
    "pharmacist",
    "startup mentor",
    "marketing strategist",
    "librarian",
    "film director",
    "music producer",
    "game master for a fantasy campaign",
    "tax adviser",
    "interior designer",
    "wedding planner",
    "bike mechanic",
    "astronomy enthusiast",
    "barista",
    "sommelier",
    "data scientist",
    "network engineer",
    "customer support agent",
    "negotiation trainer",
    "speech writer",
    "crossword setter",
    "birdwatcher",
    "quiz show host",
    "travel blogger",
    "baking instructor",
    "zoo keeper",
];

pub(crate) const BENIGN_DUTIES: &[&str] = &[
    "I will give you a topic and you will write about it in an engaging way.",
    "You will answer my questions and explain your reasoning in simple terms.",
    "I will type commands and you will reply with what the output should be.",
    "You will suggest ideas, correct my mistakes and give me feedback.",
    "Your task is to help me improve my skills over the coming weeks.",
    "You should use your knowledge of the field to give practical advice.",
    "I will describe a situation and you will propose a plan.",
    "You will review what I send you and point out strengths and weaknesses.",
    "I need you to create exercises for me and check my answers.",
    "You will write short pieces on request, adapting the tone to the audience I name.",
    "Use examples from everyday life and avoid jargon.",
    "You will generate names, slogans and short descriptions for my ideas.",
    "Provide a step-by-step schedule and explain why each step matters.",
    "I will share my notes and you will turn them into a clear outline.",
    "You will respond as that person would, with their typical expressions and knowledge.",
    "I will ask about different topics and you will answer with facts and sources.",
    "Your replies should be friendly, short and practical.",
];

pub(crate) const BENIGN_CONSTRAINTS: &[&str] = &[
    "Do not write explanations.",
    "Only reply with the result.",
    "Keep your answers short.",
    "Reply in the same language I use.",
    "Stay in character throughout.",
    "Do not break character.",
    "Use bullet points.",
    "Ask me clarifying questions first.",
    "",
];

pub(crate) const BENIGN_FIRST: &[&str] = &[
    "My first request is \"I need help planning a weekend in Lisbon.\"",
    "Let us begin with my current routine.",
    "My first sentence is \"the weather is nice today\".",
    "My first question is about improving my sleep.",
    "The first topic is renewable energy.",
    "Start with a short introduction.",
    "",
];

/// Benign documents (emails, notes, reviews, news, code) for the retrieved channel.
pub(crate) const DOC_TEMPLATES: &[&str] = &[
    "Hi {n},\n\nThanks for your note. The quarterly review has been moved to {d} at 10am in room 4B. Please bring the updated budget figures.\n\nBest,\n{m}",
    "Subject: Your order has shipped\n\nDear {n}, your package with 2 items left our warehouse on {d}. You can track it in your account. Thank you for shopping with us.",
    "Product review: I bought this kettle on {d}. It boils fast and the handle stays cool. The lid is a bit stiff, so four stars. — {n}",
    "Meeting notes ({d}): attendees {n}, {m}. Decisions: ship version 2.3 after QA sign-off; {m} to update the onboarding docs. Next meeting in two weeks.",
    "The city council voted on {d} to extend library opening hours. Council member {n} said the change responds to requests from students.",
    "Abstract: We study the effect of sleep on memory consolidation in 120 adults. Participants who slept 8 hours recalled 23% more word pairs. Contact: {n}.",
    "Recipe: whisk two eggs with 200 ml milk, add 120 g flour and a pinch of salt. Rest the batter for 20 minutes, then fry thin pancakes. Submitted by {n} on {d}.",
    "def load_config(path):\n    with open(path) as f:\n        return json.load(f)\n\n# Updated by {n} on {d}: handle missing files in the caller.",
    "Invoice #4471\nBilled to: {n}\nDate: {d}\nConsulting services, 12 hours at $90: $1,080\nPlease pay within 30 days.",
    "Weather update for {d}: cloudy in the morning, clearing in the afternoon, highs of 18°C. {n} reporting.",
    "Release notes 4.1 ({d}): fixed a crash when importing CSV files; improved search speed; the previous settings page was removed. Thanks to {n} for the report.",
    "Hello team, reminder that the office is closed on {d}. If you need access, ask {n}. Please ignore the earlier email with the wrong date. Cheers, {m}",
    "FAQ: How do I reset my password? Open Settings, choose Security and follow the steps. If you forgot your email address, contact support. Last edited by {n}.",
    "Search result: {n} — Wikipedia. {n} is a painter born in 1950, known for landscapes of the northern coast. Exhibitions: Oslo ({d}), Bergen.",
];

/// More clean documents: abstracts, news, support threads, product pages, forum posts.
pub(crate) const MORE_DOCS: &[&str] = &[
    "We propose a lightweight method for estimating river discharge from satellite images. On 40 gauged rivers the method reaches a median error of 12%. Code and data are available from the authors ({n}, {m}).",
    "Customer question: Does this backpack fit a 16-inch laptop?\nAnswer from {n}: Yes, mine fits with room to spare, although the side pocket gets tight.",
    "Local bakery wins regional award. The family-run shop on Main Street, opened by {n} in 1998, was recognised on {d} for its sourdough. Queues are expected this weekend.",
    "Thread: printer keeps jamming\n{n}: Have you tried cleaning the rollers?\n{m}: Yes, and I replaced the tray. Still jams on thick paper.\n{n}: Then check the paper weight setting in the driver.",
    "Dear customer, we received your return request on {d}. Once the item arrives at our warehouse, the refund will be issued within 5 business days. Kind regards, {m} (Customer Care)",
    "Quarterly results: revenue grew 8% year over year to $41.2 million, driven by subscriptions. Operating costs rose 3%. The board approved a dividend of $0.12 per share.",
    "Trail guide: the loop is 9 km with 350 m of climbing. Start at the north car park, follow the red markers, and keep left at the fork after the bridge. Allow three hours.",
    "Patch notes: improved matchmaking, fixed an exploit in the crafting menu, and reduced the price of cosmetic items. Known issue: audio may stutter on older devices.",
    "Hi {n}, attached is the signed contract. Could you confirm the start date and send the onboarding checklist? Thanks, {m}",
    "From the style guide: use sentence case for headings, avoid passive voice where possible, and spell out numbers below ten. Questions go to {n}.",
    "The museum's new wing displays 200 objects from the Bronze Age, including a remarkably preserved bronze helmet discovered in 1952. Entry is free on the first Sunday of each month.",
    "Error log {d}: connection timed out after 30s (host db-2). Retrying in 5s. Retry succeeded. Latency back to normal at 14:02.",
    "Abstract — Background: Hypertension is common in older adults. Methods: We followed 1,204 patients for five years. Results: Daily walking was associated with lower blood pressure. Conclusion: Further trials are warranted.",
    "Listing: 2-bedroom apartment, 68 m², third floor with elevator, close to the tram. Rent 1,150 EUR per month plus utilities. Viewings on {d}, contact {n}.",
    "Release checklist: bump the version, update the changelog, tag the commit, and publish the package. Remember to notify {n} after the release.",
];

/// Fillers for the `{n}`/`{m}` (name) and `{d}` (date) slots.
pub(crate) const NAMES: &[&str] = &[
    "Anna", "Ben", "Carlos", "Dana", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
    "Luca", "Mei", "Nora",
];

pub(crate) const DATES: &[&str] = &[
    "March 3",
    "June 14",
    "2023-11-02",
    "Friday",
    "next Tuesday",
    "12/05/2024",
    "January 9",
];

/// Agent tool-output wrappers; `{c}` is free text inside the data.
pub(crate) const TOOL_WRAPPERS: &[&str] = &[
    "{\"product\": \"{n}'s Blender X2\", \"reviews\": [{\"name\": \"{m}\", \"rating\": 4, \"content\": \"{c}\"}]}",
    "{\"emails\": [{\"from\": \"{m}@mail.example\", \"subject\": \"Re: plans for {d}\", \"body\": \"{c}\"}]}",
    "{\"event\": {\"title\": \"Team sync\", \"date\": \"{d}\", \"description\": \"{c}\"}}",
    "{\"repository\": {\"name\": \"tools-{m}\", \"stars\": 132, \"description\": \"{c}\"}}",
    "{\"note\": {\"title\": \"Shopping\", \"snippet\": \"{c}\"}}",
    "{\"tweets\": [{\"user\": \"@{m}\", \"text\": \"{c}\"}]}",
    "{\"status\": \"ok\", \"results\": [{\"title\": \"{n} - profile\", \"snippet\": \"{c}\"}]}",
    "Tool result (web_search): 1. {n} blog - \"{c}\" 2. News about {d}",
    "{\"order_id\": 88213, \"customer_note\": \"{c}\", \"total\": \"$42.10\"}",
    "{\"file\": \"notes.txt\", \"content\": \"{c}\"}",
];

/// Clean free text for the `{c}` slot of [`TOOL_WRAPPERS`].
pub(crate) const TOOL_BENIGN: &[&str] = &[
    "Works great, the battery lasts two days and it charges quickly.",
    "Looking forward to seeing everyone on {d}. I'll bring snacks.",
    "Quarterly planning, please review the slides beforehand.",
    "A small CLI to rename photos by date.",
    "Milk, eggs, bread, coffee, and apples.",
    "Just finished a 10k run, new personal best!",
    "{n} is a software engineer based in Lisbon who writes about databases.",
    "Please leave the package at the back door, thanks.",
    "Meeting notes: budget approved, hiring two interns, next review on {d}.",
    "Call the dentist to reschedule. Buy a birthday gift for {n}.",
    "The hotel was clean but the breakfast could be better. Would stay again.",
    "Don't forget to water the plants while I'm away.",
];

/// Encyclopedic paragraphs (TaskTracker-style carriers): a subject, then facts about it.
pub(crate) const ENCYCLOPEDIA_SUBJECTS: &[&str] = &[
    "The river Almora",
    "Castle Venn",
    "The Kessel Institute",
    "Mount Ilvar",
    "The Orin language",
    "Port Sabel",
    "The Tarn Railway",
];
/// Facts with `{y}` (year) and `{p}` (population) slots.
pub(crate) const ENCYCLOPEDIA_FACTS: &[&str] = &[
    "was first documented in {y} by travelling merchants.",
    "lies about 40 kilometres north of the regional capital.",
    "has a population of roughly {p} people according to the last census.",
    "was rebuilt after a fire in {y} and now houses a small museum.",
    "is known for its wool trade and its annual spring market.",
    "became part of the kingdom in {y} after a long dispute.",
    "is studied by linguists because of its unusual vowel system.",
    "was electrified in {y}, decades later than neighbouring towns.",
];
/// How later sentences of an encyclopedic paragraph refer back to the subject.
pub(crate) const ENCYCLOPEDIA_BACK_REFERENCES: &[&str] =
    &["It", "The site", "The area", "Today it"];
/// Harmless questions about a word of the system prompt; `{w}` is the word.
pub(crate) const ON_TOPIC_QUESTIONS: &[&str] = &[
    "Can you tell me more about {w} in general?",
    "What is the history of the word '{w}'?",
    "I have a question related to {w}: what are common beginner mistakes?",
    "Is {w} a good topic for a school project?",
];
/// Openers of long benign prompts.
pub(crate) const LONG_OPENERS: &[&str] = &[
    "I have a few questions:",
    "Please help me with the following.",
    "Context:",
    "Here is my draft:",
    "Some background first.",
    "Read this and answer my question below.",
    "",
];
/// Closing questions of long benign prompts.
pub(crate) const LONG_QUESTIONS: &[&str] = &[
    "Can you summarize this?",
    "What are the key points?",
    "How would you improve this?",
    "Is there anything missing?",
    "Please rewrite it in a friendlier tone.",
    "Translate it into Spanish.",
];
/// Questions put in front of a code or log snippet.
pub(crate) const CODE_QUESTIONS: &[&str] = &[
    "Why does this code fail?",
    "Can you explain this snippet?",
    "Refactor this please:",
    "What does this output mean?",
];

/// Honest requests to decode something.
pub(crate) const BENIGN_DECODE_ASKS: &[&str] = &[
    "What does this base64 string decode to?",
    "Can you decode this for me?",
    "I found this encoded string in a log file, what is it?",
    "Please convert this hex to text:",
];
