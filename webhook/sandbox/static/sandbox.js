// The /sandbox web chat. Everything a person or the bot wrote is put in the page as text
// (textContent); the only HTML inserted is the server's rendering of Telegram entities, which
// escapes every character of the text.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    world: null,
    persona: null,
    chatId: null,
    rev: 0,
    view: null,
    messages: new Map(),
    chats: [],
    seen: {},
    replyTo: null,
    dismissedForce: null,
    keyboardHidden: false,
    keyboardKey: null,
    generation: 0,
    logOpen: false,
  };

  // --- helpers ----------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function bilingual(zh, en) {
    return [document.createTextNode(zh + " "), el("span", { class: "en", text: en })];
  }

  async function api(method, path, body, raw) {
    const options = { method, headers: {} };
    if (raw !== undefined) {
      options.body = raw;
      options.headers["Content-Type"] = raw.type || "application/octet-stream";
    } else if (body !== undefined) {
      options.body = JSON.stringify(body);
      options.headers["Content-Type"] = "application/json";
    }
    const response = await fetch(path, options);
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      throw new Error(`HTTP ${response.status}`);
    }
    if (!response.ok || !data.ok) {
      const detail = data && (data.error || (data.detail && JSON.stringify(data.detail)));
      throw new Error(detail || `HTTP ${response.status}`);
    }
    return data;
  }

  function initials(name) {
    return (name || "?").trim().slice(0, 1).toUpperCase();
  }

  function colour(id) {
    const palette = ["#d9825b", "#7aa88c", "#5c8fb8", "#a879c9", "#c9a227", "#cf6f8d", "#4fa3a5"];
    return palette[Math.abs(Number(id)) % palette.length];
  }

  function avatar(name, id, extra) {
    const node = el("div", { class: `avatar ${extra || ""}`.trim(), text: initials(name), "aria-hidden": "true" });
    if (!extra) node.style.background = colour(id);
    return node;
  }

  // Times in the programme's time zone (the server's TIMEZONE, sent with the world), on a
  // 24-hour clock, whatever the browser's own zone: the bot's texts say "10:37 (Asia/Shanghai)".
  const clocks = {};
  function formatter(kind) {
    const zone = (state.world && state.world.timezone) || undefined;
    const key = `${kind}:${zone}`;
    if (!clocks[key]) {
      const fields = kind === "time"
        ? { hour: "2-digit", minute: "2-digit" }
        : kind === "seconds"
          ? { hour: "2-digit", minute: "2-digit", second: "2-digit" }
          : { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" };
      const options = { ...fields, hourCycle: "h23" };
      try {
        clocks[key] = new Intl.DateTimeFormat("zh-CN", { ...options, timeZone: zone });
      } catch (error) {
        clocks[key] = new Intl.DateTimeFormat("zh-CN", options); // a zone this browser lacks
      }
    }
    return clocks[key];
  }

  function parts(seconds, kind) {
    const out = {};
    for (const part of formatter(kind).formatToParts(new Date(seconds * 1000))) out[part.type] = part.value;
    return out;
  }

  // "10:37"
  function clock(seconds) {
    const p = parts(seconds, "time");
    return `${p.hour}:${p.minute}`;
  }

  // "10:37:05", for the log
  function clockSeconds(seconds) {
    const p = parts(seconds, "seconds");
    return `${p.hour}:${p.minute}:${p.second}`;
  }

  // "2026-11-29 10:37:05 (Asia/Shanghai)", for a bubble's tooltip
  function stamp(seconds) {
    const p = parts(seconds, "full");
    const zone = formatter("full").resolvedOptions().timeZone;
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} (${zone})`;
  }

  let toastTimer = null;
  function toast(text, isError) {
    const node = $("toast");
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, isError ? 5000 : 3000);
  }

  function alertBox(text) {
    $("alert-text").textContent = text;
    $("alert").hidden = false;
    $("alert-ok").focus();
  }

  function fail(error) {
    toast(`⚠ ${error.message || error}`, true);
  }

  function isBotLink(url) {
    if (!state.world) return false;
    const name = state.world.bot.username.toLowerCase();
    try {
      const parsed = new URL(url.startsWith("t.me/") ? `https://${url}` : url);
      if (["t.me", "telegram.me"].includes(parsed.hostname)) {
        return parsed.pathname.replace(/^\/+/, "").split("/")[0].toLowerCase() === name;
      }
      if (parsed.protocol === "tg:" && url.startsWith("tg://resolve")) {
        return (parsed.searchParams.get("domain") || "").toLowerCase() === name;
      }
    } catch (error) {
      return false;
    }
    return false;
  }

  function persona() {
    return state.world.personas.find((p) => p.id === state.persona);
  }

  // --- personas and chats -----------------------------------------------------------------

  function personaButton(p) {
    return el(
      "button",
      {
        type: "button",
        class: `persona${p.id === state.persona ? " active" : ""}`,
        role: "listitem",
        "aria-pressed": String(p.id === state.persona),
        dataset: { personaId: String(p.id) },
        onclick: () => selectPersona(p.id),
      },
      avatar(p.first_name, p.id, "small"),
      el(
        "div",
        { class: "persona-text" },
        el(
          "div",
          { class: "persona-name" },
          el("b", { text: p.name }),
          el("span", { class: "lang", text: p.language_code || "?", title: "Telegram 界面语言 / app language" }),
          p.role_zh ? el("span", { class: "persona-role-zh", text: p.role_zh }) : null,
        ),
        p.role_en ? el("div", { class: "persona-role", text: p.role_en }) : null,
      ),
    );
  }

  // Personas by group (residents, staff, council), each under its heading. On a phone the
  // list folds to the persona being played and a "switch" button, so the chats stay in view.
  function renderPersonas() {
    const box = $("personas");
    const scroller = $("personas-scroller");
    const top = scroller.scrollTop;
    box.replaceChildren();
    const groups = (state.world.persona_groups || []).slice();
    const known = new Set(groups.map((g) => g.id));
    if (state.world.personas.some((p) => !known.has(p.group))) groups.push({ id: "", zh: "其他", en: "Others" });
    for (const group of groups) {
      const members = state.world.personas.filter((p) => (known.has(p.group) ? p.group === group.id : group.id === ""));
      if (!members.length) continue;
      const hasActive = members.some((p) => p.id === state.persona);
      box.append(
        el(
          "div",
          { class: `persona-group${hasActive ? " has-active" : ""}`, dataset: { group: group.id } },
          el("h3", { class: "persona-group-title" }, ...bilingual(group.zh, group.en), el("span", { class: "count", text: String(members.length) })),
          el("div", { class: "persona-grid", role: "list", "aria-label": `${group.zh} / ${group.en}` }, ...members.map(personaButton)),
        ),
      );
    }
    const toggle = $("personas-toggle");
    toggle.setAttribute("aria-expanded", String(!$("side").classList.contains("folded")));
    toggle.replaceChildren(
      ...($("side").classList.contains("folded")
        ? bilingual(`切换角色（${state.world.personas.length}）`, "Switch ▾")
        : bilingual("收起", "Fold ▴")),
    );
    scroller.scrollTop = top;
    personasScrolled();
  }

  // Scroll the persona list (and nothing else) so that the persona being played is in view,
  // clear of the "N more" button at the bottom edge.
  function revealPersona() {
    const scroller = $("personas-scroller");
    const active = scroller.querySelector(".persona.active");
    if (!active || active.offsetParent === null) return;
    const box = scroller.getBoundingClientRect();
    const card = active.getBoundingClientRect();
    if (card.bottom > box.bottom - 4) scroller.scrollTop += card.bottom - box.bottom + 40;
    else if (card.top < box.top) scroller.scrollTop -= box.top - card.top + 28;
    personasScrolled();
  }

  // The scroll hints of the persona list: fades at the edges that hide personas, and a
  // button that says how many are below and scrolls to them.
  function personasScrolled() {
    const scroller = $("personas-scroller");
    const viewport = scroller.parentElement;
    const more = $("personas-more");
    const bottom = scroller.getBoundingClientRect().bottom;
    const below = [...scroller.querySelectorAll(".persona")].filter(
      (node) => node.offsetParent !== null && node.getBoundingClientRect().bottom > bottom + 2,
    ).length;
    viewport.classList.toggle("more-above", scroller.scrollTop > 2);
    viewport.classList.toggle("more-below", below > 0);
    more.hidden = below === 0;
    if (below > 0) {
      more.replaceChildren(...bilingual(`▾ 下面还有 ${below} 个角色`, `${below} more`));
    }
  }

  function personasMore() {
    const scroller = $("personas-scroller");
    const bottom = scroller.getBoundingClientRect().bottom;
    const next = [...scroller.querySelectorAll(".persona")].find(
      (node) => node.offsetParent !== null && node.getBoundingClientRect().bottom > bottom + 2,
    );
    if (!next) return;
    // The next hidden persona's group heading too, when it starts a group.
    const group = next.closest(".persona-group");
    const target = group && group.querySelector(".persona") === next ? group : next;
    const offset = target.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
    scroller.scrollBy({ top: Math.max(offset - 8, 40), behavior: "smooth" });
  }

  function chatName(chat) {
    return chat.type === "private" ? `${chat.title}` : chat.title;
  }

  async function loadChats() {
    if (state.persona === null) return;
    const forPersona = state.persona;
    const data = await api("GET", `/sandbox/api/personas/${forPersona}/chats`);
    if (forPersona !== state.persona) return;
    state.world.personas = data.personas;
    state.chats = data.chats;
    const key = (id) => `${state.persona}:${id}`;
    for (const chat of state.chats) {
      if (!(key(chat.id) in state.seen)) state.seen[key(chat.id)] = chat.rev;
      if (chat.id === state.chatId) state.seen[key(chat.id)] = Math.max(state.seen[key(chat.id)], chat.rev);
    }
    const box = $("chats");
    box.replaceChildren();
    for (const chat of state.chats) {
      const unread = chat.rev > state.seen[key(chat.id)] && chat.id !== state.chatId;
      const label = chat.type === "private" ? bilingual("私聊", "Private") : bilingual("群组", "Group");
      box.append(
        el(
          "button",
          {
            type: "button",
            class: `chat-item${chat.id === state.chatId ? " active" : ""}`,
            role: "listitem",
            dataset: { chatId: String(chat.id) },
            onclick: () => openChat(chat.id),
          },
          avatar(chatName(chat), chat.id, chat.type === "private" ? "bot" : "group"),
          el(
            "div",
            { class: "chat-item-text" },
            el("div", { class: "chat-name" }, el("span", { text: chatName(chat) }), el("span", { class: "en" }, ...label)),
            el("div", { class: "chat-preview", text: chat.preview || (chat.type === "private" ? "机器人私聊 · chat with the bot" : chat.about_zh) }),
          ),
          unread ? el("span", { class: "dot", "aria-label": "新消息 / new" }) : null,
        ),
      );
    }
  }

  async function selectPersona(id) {
    const previous = state.persona;
    state.persona = id;
    localStorage.setItem("sandbox.persona", String(id));
    $("side").classList.add("folded");
    renderPersonas();
    const wasPrivate = state.chatId !== null && state.chatId === previous;
    await loadChats();
    revealPersona(); // the persona's chats may have taken room from the list
    const stillVisible = state.chats.some((c) => c.id === state.chatId);
    if (wasPrivate || !stillVisible) {
      if (state.chatId !== null) await openChat(wasPrivate ? id : state.chats[0].id);
    } else if (state.chatId !== null) {
      await openChat(state.chatId);
    }
    writeHash();
  }

  function writeHash() {
    const parts = [];
    if (state.persona !== null) parts.push(`p=${state.persona}`);
    if (state.chatId !== null) parts.push(`c=${state.chatId}`);
    history.replaceState(null, "", `#${parts.join("&")}`);
  }

  // --- a chat -----------------------------------------------------------------------------

  async function openChat(id) {
    state.generation += 1;
    state.chatId = id;
    state.rev = 0;
    state.view = null;
    state.messages.clear();
    state.replyTo = null;
    state.dismissedForce = null;
    state.keyboardHidden = false;
    $("messages").replaceChildren();
    $("reply-bar").hidden = true;
    $("command-menu").hidden = true;
    $("location-form").hidden = true;
    $("app").classList.add("has-chat");
    $("app").classList.remove("no-chat");
    writeHash();
    await refresh();
    scrollToBottom(true);
    await loadChats();
    $("text").focus({ preventScroll: true });
  }

  async function refresh() {
    if (state.chatId === null || state.persona === null) return;
    const generation = state.generation;
    const view = await api("GET", `/sandbox/api/chats/${state.chatId}?persona=${state.persona}&since=${state.rev}`);
    if (generation !== state.generation) return;
    apply(view);
  }

  function nearBottom() {
    const box = $("messages");
    return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  }

  function scrollToBottom(force) {
    const box = $("messages");
    if (force || nearBottom()) box.scrollTop = box.scrollHeight;
  }

  function apply(view) {
    const stick = nearBottom();
    state.view = view;
    state.rev = view.rev;
    state.seen[`${state.persona}:${state.chatId}`] = view.chat.rev;
    renderHead(view.chat);
    let ownNew = false;
    for (const message of view.messages) {
      if (!state.messages.has(message.id) && message.from && message.from.is_self) ownNew = true;
      upsert(message);
    }
    renderPinned(view.pinned);
    renderErrors(view.errors);
    renderComposer(view);
    $("typing").hidden = !view.action;
    for (const answer of view.toasts || []) showAnswer(answer);
    if (view.messages.length) scrollToBottom(stick || ownNew);
  }

  function renderHead(chat) {
    const title = $("chat-title");
    const sub = $("chat-sub");
    const actions = $("chat-actions");
    const avatarBox = $("chat-avatar");
    avatarBox.replaceWith(avatar(chatName(chat), chat.id, chat.type === "private" ? "bot" : "group"));
    document.querySelector("#chat-head .avatar").id = "chat-avatar";
    title.textContent = chatName(chat);
    actions.replaceChildren();
    if (chat.type === "private") {
      sub.textContent = `机器人 · bot · @${state.world.bot.username}`;
      actions.append(
        chat.blocked
          ? el("button", { type: "button", class: "action", onclick: () => setBlocked(false) }, ...bilingual("解除屏蔽", "Unblock"))
          : el("button", { type: "button", class: "action danger", onclick: () => setBlocked(true) }, ...bilingual("🚫 屏蔽机器人", "Block bot")),
      );
      return;
    }
    sub.textContent = `${chat.members} 位成员 / members · ${chat.about_zh} / ${chat.about_en}`;
    const botIn = ["creator", "administrator", "member"].includes(chat.bot_status);
    const status = {
      administrator: ["机器人：管理员", "bot: admin"],
      member: ["机器人：成员", "bot: member"],
      left: ["机器人不在群里", "bot not in group"],
      kicked: ["机器人已被移出", "bot removed"],
    }[chat.bot_status] || [chat.bot_status, ""];
    actions.append(el("span", { class: `badge${botIn ? "" : " off"}` }, ...bilingual(status[0], status[1])));
    const admin = ["creator", "administrator"].includes(chat.my_status);
    if (!admin) return;
    if (!botIn) {
      actions.append(el("button", { type: "button", class: "action", onclick: () => botAction("add") }, ...bilingual("➕ 添加机器人", "Add bot")));
    } else {
      if (chat.bot_status === "member") {
        actions.append(el("button", { type: "button", class: "action", onclick: () => botAction("promote") }, ...bilingual("设为管理员", "Make admin")));
      }
      actions.append(el("button", { type: "button", class: "action danger", onclick: () => botAction("remove") }, ...bilingual("移除机器人", "Remove bot")));
    }
  }

  function renderPinned(pinned) {
    const bar = $("pinned");
    if (!pinned) {
      bar.hidden = true;
      return;
    }
    bar.hidden = false;
    bar.replaceChildren(
      el("span", { class: "pin-label" }, "📌 置顶 ", el("span", { class: "en", text: "Pinned" })),
      el("span", { class: "pin-text", text: pinned.preview }),
    );
    bar.onclick = () => jumpTo(pinned.message_id);
  }

  function renderErrors(errors) {
    const box = $("errors");
    if (!errors || !errors.length) {
      box.hidden = true;
      return;
    }
    const last = errors[errors.length - 1];
    box.hidden = false;
    box.textContent = `⚠ 机器人处理更新 #${last.update_id} 失败 / the bot failed on update #${last.update_id}: ${last.error}`;
  }

  function jumpTo(messageId) {
    const row = document.querySelector(`#messages [data-message-id="${messageId}"]`);
    if (!row) return;
    row.scrollIntoView({ block: "center", behavior: "smooth" });
    row.classList.add("flash");
    setTimeout(() => row.classList.remove("flash"), 1200);
  }

  // --- messages ---------------------------------------------------------------------------

  function upsert(message) {
    const box = $("messages");
    const existing = box.querySelector(`[data-message-id="${message.id}"]`);
    if (message.deleted) {
      state.messages.delete(message.id);
      if (existing) existing.remove();
      return;
    }
    state.messages.set(message.id, message);
    const node = renderMessage(message);
    if (existing) {
      existing.replaceWith(node);
      return;
    }
    const later = [...box.children].find((child) => Number(child.dataset.messageId) > message.id);
    if (later) box.insertBefore(node, later);
    else box.append(node);
  }

  function renderMessage(m) {
    if (m.service) {
      return el("div", { class: "service", text: m.service, dataset: { messageId: String(m.id) } });
    }
    const isGroup = state.view && state.view.chat.type !== "private";
    const out = m.from.is_self;
    const bubble = el("div", { class: "bubble" });
    if (isGroup && !out) {
      bubble.append(el("div", { class: `sender${m.from.is_bot ? " bot" : ""}`, text: m.from.is_bot ? `🤖 ${m.from.name}` : m.from.name }));
    }
    if (m.reply_to) {
      bubble.append(
        el(
          "div",
          { class: "reply-quote", onclick: () => jumpTo(m.reply_to.id) },
          el("b", { text: m.reply_to.name }),
          el("span", { text: m.reply_to.preview }),
        ),
      );
    }
    if (m.photo) {
      bubble.append(
        el("div", { class: "photo" }, el("img", { src: `/sandbox/api/files/${encodeURIComponent(m.photo.file_id)}`, alt: "照片 / photo", loading: "lazy" })),
      );
    }
    if (m.document) {
      bubble.append(
        el("a", { class: "doc-card", href: `/sandbox/api/files/${encodeURIComponent(m.document.file_id)}`, download: m.document.name }, "📄 ", m.document.name),
      );
    }
    if (m.location) {
      const { latitude, longitude } = m.location;
      bubble.append(
        el(
          "div",
          { class: "location-card" },
          el("span", { class: "pin", text: "📍" }),
          el("div", {}, `${latitude.toFixed(4)}, ${longitude.toFixed(4)}`, el("small", { text: "位置 / Location" })),
        ),
      );
    }
    if (m.contact) {
      bubble.append(el("div", { class: "location-card" }, "👤 ", m.contact.phone_number));
    }
    if (m.poll && m.poll.question !== undefined) bubble.append(renderPoll(m));
    if (m.html !== undefined) {
      const text = el("div", { class: "text" });
      text.innerHTML = m.html; // rendered by the server from entities; every character escaped
      bubble.append(text);
    }
    bubble.append(
      el("div", { class: "meta" }, m.edited ? "已编辑 edited · " : null, el("time", { text: clock(m.date), title: stamp(m.date) })),
    );
    const column = el("div", { class: "msg" }, bubble);
    if (m.inline_keyboard) column.append(renderInlineKeyboard(m));
    const row = el("div", { class: `row${out ? " out" : ""}`, dataset: { messageId: String(m.id) } });
    if (!out) row.append(avatar(m.from.name, m.from.id, m.from.is_bot ? "bot small" : "small"));
    else row.append(el("span", { style: "width:0" }));
    row.append(column);
    row.append(
      el("button", {
        type: "button",
        class: "reply-action",
        title: "回复 / Reply",
        "aria-label": "回复 / Reply",
        text: "↩",
        onclick: () => setReply(m),
      }),
    );
    return row;
  }

  function renderInlineKeyboard(m) {
    const box = el("div", { class: "inline-keyboard" });
    m.inline_keyboard.forEach((row, r) => {
      const line = el("div", { class: "inline-row" });
      row.forEach((button, c) => {
        const mark = { url: "↗", deeplink: "↗", copy: "⧉" }[button.kind];
        line.append(
          el(
            "button",
            {
              type: "button",
              class: "inline-button",
              dataset: { kind: button.kind },
              title: button.url || button.text,
              onclick: (event) => pressInline(event.currentTarget, m, r, c, button),
            },
            el("span", { class: "label" }, button.text, mark ? el("span", { class: "kind", text: mark }) : null),
          ),
        );
      });
      box.append(line);
    });
    return box;
  }

  function renderPoll(m) {
    const poll = m.poll;
    const voted = poll.mine && poll.mine.length > 0;
    const showResults = voted || poll.closed;
    const box = el("div", { class: "poll" });
    box.append(el("div", { class: "poll-question", text: poll.question }));
    const kind = poll.closed
      ? "投票已结束 · Final results"
      : `${poll.anonymous ? "匿名投票 · Anonymous poll" : "公开投票 · Public poll"}${poll.multiple ? " · 可多选 multiple answers" : ""}`;
    box.append(el("div", { class: "poll-kind", text: kind }));
    if (showResults) {
      poll.options.forEach((option, index) => {
        const percent = poll.total ? Math.round((option.count / poll.total) * 100) : 0;
        const mine = poll.mine.includes(index);
        box.append(
          el(
            "div",
            { class: "poll-result" },
            el("div", { class: "line" }, el("span", { text: `${mine ? "✓ " : ""}${option.text}` }), el("b", { text: `${percent}% (${option.count})` })),
            el("div", { class: "bar" }, el("i", { style: `width:${percent}%` })),
          ),
        );
      });
    } else {
      const chosen = new Set();
      poll.options.forEach((option, index) => {
        const button = el("button", {
          type: "button",
          class: "poll-option",
          text: option.text,
          onclick: () => {
            if (!poll.multiple) {
              vote(m.id, [index]);
              return;
            }
            if (chosen.has(index)) chosen.delete(index);
            else chosen.add(index);
            button.classList.toggle("checked", chosen.has(index));
          },
        });
        box.append(button);
      });
      if (poll.multiple) {
        box.append(el("button", { type: "button", class: "primary", onclick: () => vote(m.id, [...chosen]) }, ...bilingual("投票", "Vote")));
      }
    }
    const footer = el("div", { class: "poll-actions" }, el("span", { text: `${poll.total} 人已投票 · ${poll.total} voted` }));
    if (voted && !poll.closed && poll.revoting) {
      footer.append(el("button", { type: "button", onclick: () => vote(m.id, []) }, ...bilingual("撤回投票", "Retract vote")));
    }
    box.append(footer);
    return box;
  }

  // --- composer ---------------------------------------------------------------------------

  function renderComposer(view) {
    const chat = view.chat;
    const privateChat = chat.type === "private";
    const blocked = privateChat && chat.blocked;
    const notStarted = privateChat && !chat.started && !blocked;
    $("start-bar").hidden = !notStarted;
    $("blocked-bar").hidden = !blocked;
    $("input-row").hidden = blocked || notStarted;
    const commands = view.commands || [];
    $("menu-button").hidden = commands.length === 0;
    const menu = $("command-menu");
    menu.replaceChildren(
      ...commands.map((command) =>
        el(
          "button",
          { type: "button", class: "command", role: "menuitem", onclick: () => { menu.hidden = true; sendText(`/${command.command}`); } },
          el("b", { text: `/${command.command}` }),
          el("span", { text: command.description }),
        ),
      ),
    );
    if (!commands.length) menu.hidden = true;

    const force = view.force_reply;
    if (force && !state.replyTo && state.dismissedForce !== force.message_id) {
      const target = state.messages.get(force.message_id);
      if (target) setReply(target, true);
    }

    const keyboard = view.keyboard;
    const box = $("reply-keyboard");
    const key = keyboard ? JSON.stringify(keyboard) : null;
    if (key !== state.keyboardKey) {
      state.keyboardKey = key;
      state.keyboardHidden = false;
      box.replaceChildren();
      if (keyboard) {
        keyboard.rows.forEach((row, r) => {
          const line = el("div", { class: "kb-row" });
          row.forEach((button, c) => {
            const mark = button.location ? "📍 " : button.contact ? "👤 " : "";
            const label = button.text.includes(mark.trim()) ? button.text : `${mark}${button.text}`;
            line.append(el("button", { type: "button", class: "kb-button", text: label, onclick: () => pressKeyboard(r, c) }));
          });
          box.append(line);
        });
        box.classList.toggle("resize", keyboard.resize);
      }
    }
    $("text").placeholder =
      (force && force.placeholder) || (keyboard && keyboard.placeholder) || "输入消息… / Message…";
    $("keyboard-toggle").hidden = !keyboard || blocked;
    box.hidden = !keyboard || state.keyboardHidden || blocked || notStarted;
  }

  function setReply(message, fromForce) {
    state.replyTo = message.id;
    $("reply-preview").textContent = `${message.from.name}: ${previewOf(message)}`;
    $("reply-bar").hidden = false;
    if (!fromForce) $("text").focus();
  }

  function clearReply() {
    if (state.view && state.view.force_reply && state.replyTo === state.view.force_reply.message_id) {
      state.dismissedForce = state.replyTo;
    }
    state.replyTo = null;
    $("reply-bar").hidden = true;
  }

  function previewOf(message) {
    if (message.html !== undefined) {
      const scratch = document.createElement("div");
      scratch.innerHTML = message.html;
      return scratch.textContent.slice(0, 60);
    }
    if (message.photo) return "🖼 照片 / Photo";
    if (message.location) return "📍 位置 / Location";
    if (message.poll) return `📊 ${message.poll.question}`;
    return "…";
  }

  // --- acts -------------------------------------------------------------------------------

  async function act(promise) {
    try {
      const result = await promise;
      await refresh();
      return result;
    } catch (error) {
      fail(error);
      await refresh().catch(() => {});
      return null;
    }
  }

  async function sendText(text) {
    if (!text.trim() || state.chatId === null) return;
    const replyTo = state.replyTo;
    if (replyTo !== null) {
      state.replyTo = null;
      $("reply-bar").hidden = true;
    }
    const force = state.view && state.view.force_reply;
    const ignoreForce = Boolean(force && state.dismissedForce === force.message_id);
    scrollToBottom(true);
    await act(
      api("POST", `/sandbox/api/chats/${state.chatId}/messages`, {
        persona: state.persona,
        text,
        reply_to: replyTo,
        ignore_force_reply: ignoreForce,
      }),
    );
    scrollToBottom(true);
  }

  function showAnswer(answer) {
    if (!answer || !answer.text) return;
    if (answer.show_alert) alertBox(answer.text);
    else toast(answer.text);
  }

  async function pressInline(button, message, row, column, info) {
    if (info.kind === "url") {
      window.open(info.url, "_blank", "noopener,noreferrer");
      return;
    }
    if (info.kind === "copy") {
      toast("已复制 / Copied");
    }
    button.classList.add("busy");
    const result = await act(
      api("POST", `/sandbox/api/chats/${state.chatId}/press`, { persona: state.persona, message_id: message.id, row, column }),
    );
    button.classList.remove("busy");
    if (!result) return;
    if (result.kind === "deeplink") {
      await openChat(state.persona);
    } else if (result.kind === "copy" && result.answer && navigator.clipboard) {
      navigator.clipboard.writeText(result.answer.text).catch(() => {});
    } else if (result.kind === "unsupported") {
      toast(result.answer.text);
    } else {
      showAnswer(result.answer);
    }
  }

  async function pressKeyboard(row, column) {
    const keyboard = state.view && state.view.keyboard;
    await act(api("POST", `/sandbox/api/chats/${state.chatId}/keyboard`, { persona: state.persona, row, column }));
    if (keyboard && keyboard.one_time) state.keyboardHidden = true;
    scrollToBottom(true);
  }

  async function vote(messageId, optionIds) {
    await act(api("POST", `/sandbox/api/chats/${state.chatId}/vote`, { persona: state.persona, message_id: messageId, option_ids: optionIds }));
  }

  async function botAction(action) {
    const result = await act(api("POST", `/sandbox/api/chats/${state.chatId}/bot`, { persona: state.persona, action }));
    if (result) await loadChats();
  }

  async function setBlocked(blocked) {
    await act(api("POST", `/sandbox/api/personas/${state.persona}/block`, { blocked }));
    await loadChats();
  }

  async function openLink(url) {
    if (!isBotLink(url)) {
      window.open(url, "_blank", "noopener,noreferrer");
      return;
    }
    const result = await act(api("POST", `/sandbox/api/personas/${state.persona}/link`, { url }));
    if (result && result.kind === "deeplink") await openChat(state.persona);
  }

  async function sendPhoto(file) {
    if (!file) return;
    const caption = $("text").value;
    $("text").value = "";
    autosize();
    const query = new URLSearchParams({ persona: String(state.persona), caption, name: file.name || "photo" });
    await act(api("POST", `/sandbox/api/chats/${state.chatId}/photo?${query}`, undefined, file));
    scrollToBottom(true);
  }

  async function sendLocation(event) {
    event.preventDefault();
    const latitude = Number($("lat").value);
    const longitude = Number($("lon").value);
    $("location-form").hidden = true;
    await act(api("POST", `/sandbox/api/chats/${state.chatId}/location`, { persona: state.persona, latitude, longitude }));
    scrollToBottom(true);
  }

  // --- log panel --------------------------------------------------------------------------

  async function refreshLog() {
    if (!state.logOpen) return;
    try {
      const data = await api("GET", "/sandbox/api/log");
      const list = $("log-list");
      list.replaceChildren(
        ...data.log.slice().reverse().map((entry) => {
          const good = entry.status === 200 || entry.status === 0;
          const when = clockSeconds(entry.at);
          return el(
            "li",
            {},
            el("span", { class: good ? "st-ok" : "st-bad", text: `${entry.status || "·"} ` }),
            `${when} ${entry.kind === "api" ? "bot →" : "→ bot"} ${entry.name} `,
            el("span", { class: "en", text: entry.summary }),
          );
        }),
      );
    } catch (error) {
      // the panel is a convenience; the next tick retries
    }
  }

  // --- wiring -----------------------------------------------------------------------------

  function autosize() {
    const text = $("text");
    text.style.height = "auto";
    text.style.height = `${Math.min(text.scrollHeight, 140)}px`;
  }

  function wire() {
    $("input-row").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = $("text").value;
      $("text").value = "";
      autosize();
      sendText(text);
    });
    $("text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("input-row").requestSubmit();
      }
    });
    $("text").addEventListener("input", autosize);
    $("reply-cancel").addEventListener("click", clearReply);
    $("menu-button").addEventListener("click", () => { $("command-menu").hidden = !$("command-menu").hidden; });
    $("photo-button").addEventListener("click", () => $("photo-input").click());
    $("photo-input").addEventListener("change", (event) => {
      const file = event.target.files[0];
      event.target.value = "";
      sendPhoto(file);
    });
    $("location-button").addEventListener("click", () => {
      const form = $("location-form");
      form.hidden = !form.hidden;
      if (!form.hidden) $("lat").focus();
    });
    $("location-cancel").addEventListener("click", () => { $("location-form").hidden = true; });
    $("location-form").addEventListener("submit", sendLocation);
    $("keyboard-toggle").addEventListener("click", () => {
      state.keyboardHidden = !state.keyboardHidden;
      $("reply-keyboard").hidden = state.keyboardHidden;
    });
    $("start-button").addEventListener("click", async () => {
      await act(api("POST", `/sandbox/api/personas/${state.persona}/start`, {}));
    });
    $("unblock-button").addEventListener("click", () => setBlocked(false));
    $("back").addEventListener("click", () => {
      $("app").classList.remove("has-chat");
      state.chatId = null;
      state.generation += 1;
      writeHash();
      loadChats().catch(fail);
    });
    $("alert-ok").addEventListener("click", () => { $("alert").hidden = true; });
    $("personas-toggle").addEventListener("click", () => {
      $("side").classList.toggle("folded");
      renderPersonas();
      revealPersona();
    });
    $("personas-scroller").addEventListener("scroll", personasScrolled, { passive: true });
    $("personas-more").addEventListener("click", personasMore);
    new ResizeObserver(personasScrolled).observe($("personas-scroller"));
    $("log-toggle").addEventListener("click", () => {
      state.logOpen = !state.logOpen;
      $("log-panel").hidden = !state.logOpen;
      refreshLog();
    });
    $("log-close").addEventListener("click", () => {
      state.logOpen = false;
      $("log-panel").hidden = true;
    });
    $("messages").addEventListener("click", (event) => {
      const target = event.target;
      if (!(target instanceof Element)) return;
      const spoiler = target.closest(".tg-spoiler");
      if (spoiler) {
        spoiler.classList.add("shown");
        return;
      }
      const quote = target.closest("blockquote.expandable");
      if (quote) quote.classList.toggle("open");
      const command = target.closest("a.tg-command");
      if (command) {
        event.preventDefault();
        sendText(command.dataset.command);
        return;
      }
      const link = target.closest("a.tg-link");
      if (link) {
        event.preventDefault();
        openLink(link.getAttribute("href"));
      }
    });
  }

  async function tick() {
    let count = 0;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      count += 1;
      try {
        if (state.chatId !== null && !document.hidden) await refresh();
        if (count % 4 === 0) await loadChats();
        if (count % 3 === 0) await refreshLog();
      } catch (error) {
        // a restart of the server: keep polling
      }
    }
  }

  // The page shows once the fallback fonts for Chinese and emoji (/assets/fonts.css) are
  // here, drawn by nothing yet. A system without such fonts needs them, and Chromium can keep
  // drawing text it laid out before a font arrived as empty boxes, even after it has. At
  // worst the page shows after FONT_WAIT_MS with what the system has.
  const FONT_WAIT_MS = 3000;
  async function fontsFirst() {
    const waited = new Promise((resolve) => setTimeout(resolve, FONT_WAIT_MS));
    const fonts = Promise.all([
      document.fonts.load('16px "Minsheng Sans"', "民"),
      document.fonts.load('16px "Minsheng Emoji"', "📌"),
    ]).catch(() => {});
    await Promise.race([fonts, waited]);
    document.body.classList.remove("fonts-pending");
  }

  async function start() {
    await fontsFirst();
    wire();
    const data = await api("GET", "/sandbox/api/world");
    state.world = data;
    $("lat").value = data.location.latitude;
    $("lon").value = data.location.longitude;
    const hash = new URLSearchParams(location.hash.slice(1));
    const saved = Number(hash.get("p") || localStorage.getItem("sandbox.persona"));
    const known = data.personas.some((p) => p.id === saved);
    state.persona = known ? saved : data.personas[0].id;
    $("side").classList.add("folded");
    renderPersonas();
    await loadChats();
    revealPersona(); // wherever the persona being played is in the list
    const chat = Number(hash.get("c"));
    if (hash.get("c") && state.chats.some((c) => c.id === chat)) await openChat(chat);
    tick();
  }

  start().catch(fail);
})();
