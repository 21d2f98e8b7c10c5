// tankwatch dashboard core: strings, API access with login, the live websocket, shared state (park tree,
// readings, alarms), the audible annunciator and the view router. The views (control.js, park.js,
// replay.js) and the trend chart (trend.js) build on window.tankwatch. Plain JS, no framework, no request
// to any other host.
"use strict";

(function () {
  // ----- strings: every text on the page, Chinese first -------------------------------------------
  const STRINGS = {
    "zh-CN": {
      "title": "重大危险源在线监测",
      "langButton": "English",
      "loading": "加载中…",
      "loadError": "无法加载园区配置，重试中…",
      "notAvailable": "此服务器不提供该接口",
      "apiError": "接口错误",
      "view.control": "控制室",
      "view.park": "园区监管",
      "view.replay": "测试回放",
      "view.journal": "报警日志",
      "view.api": "接口",
      "api.loading": "加载接口文档…",
      "api.note": "接口文档（OpenAPI）：在此发出的请求带有当前登录身份，与页面权限相同。",
      "view.settings": "设置",
      "settings.alarms": "报警设置",
      "settings.routes": "升级路线",
      "settings.users": "用户管理",
      "settings.account": "我的账号",
      "settings.find": "位号",
      "settings.loading": "加载中…",
      "settings.count": "{n} 个测点",
      "settings.priorityRule": "优先级：高高/低低/可燃二级为高，高/低/一级/氧气/变化率为中，数据质量为低；一、二级重大危险源各升一级，三、四级的高高/低低/可燃二级升为紧急（tankwatch 默认）。设置在站点配置文件中修改。",
      "settings.fromStandard": "标准默认值",
      "settings.deadband": "死区",
      "settings.onDelay": "报警延时",
      "settings.offDelay": "恢复延时",
      "settings.realarm": "重复报警",
      "settings.stale": "通信中断判定",
      "settings.outOfService": "储罐停用：报警抑制",
      "settings.esd": "联锁切断阀",
      "settings.hazardLevel": "{n} 级重大危险源",
      "settings.kindRange": "类型 / 量程",
      "settings.conditions": "报警限值与优先级",
      "settings.timing": "死区与延时",
      "settings.quality": "数据质量",
      "settings.notes": "备注",
      "settings.match.priority": "优先级",
      "settings.match.grade": "分级",
      "settings.match.enterprise": "企业",
      "settings.match.source": "危险源",
      "settings.match.sensor": "测点",
      "settings.match.condition": "报警类型",
      "settings.match.quality": "数据质量",
      "settings.matchAll": "全部报警",
      "settings.default": "tankwatch 默认",
      "settings.continue": "继续匹配后续路线",
      "settings.minutes": "{n} 分钟",
      "settings.repeat": "未确认时每 {n} 分钟提醒",
      "settings.receivers": "通知渠道",
      "settings.routesIntro": "报警按以下路线逐级升级，直至确认；子路线继承上级未设置的选项。路线在站点配置文件中修改。",
      "settings.inhibit": "报警抑制规则",
      "settings.inhibitRule": "{source} 报警期间，与之{equal}相同的 {target} 报警不升级",
      "settings.label.device": "设备",
      "settings.label.sensor": "测点",
      "settings.label.tank": "储罐",
      "settings.label.source": "危险源",
      "settings.label.enterprise": "企业",
      "settings.none": "无",
      "settings.receiver.webhook": "Webhook",
      "settings.receiver.email": "邮件",
      "settings.attempts": "最多尝试 {n} 次",
      "settings.inboxOnly": "仅页面消息中心",
      "settings.grouping": "分组等待 {wait} 秒 · 去重窗口 {dedup}",
      "account.change": "修改密码",
      "account.current": "当前密码",
      "account.new": "新密码（至少 8 位）",
      "account.repeat": "再次输入新密码",
      "account.save": "修改",
      "account.mismatch": "两次输入的新密码不一致",
      "account.changed": "密码已修改，其他设备上的登录已失效",
      "users.add": "新增用户",
      "users.login": "账号",
      "users.name": "姓名",
      "users.role": "角色",
      "users.park": "园区",
      "users.county": "区县",
      "users.password": "初始密码（至少 8 位）",
      "users.save": "保存",
      "users.scopeKind": "管辖范围",
      "users.scope.enterprises": "企业",
      "users.scope.park": "园区",
      "users.scope.county": "区县",
      "users.editTitle": "编辑用户 {login}",
      "users.addTitle": "新增用户",
      "users.pickEnterprise": "请至少选择一个企业",
      "users.saved": "已保存 {login}",
      "users.added": "已新增 {login}",
      "users.enabled": "已启用 {login}",
      "users.disabled": "已停用 {login}，其登录立即失效",
      "users.resetTitle": "重置密码",
      "users.resetSub": "为 {login} 设置新密码；其现有登录立即失效。请将密码当面或通过安全渠道告知本人，并提醒其登录后修改。",
      "users.newPassword": "新密码",
      "users.reset": "已重置 {login} 的密码",
      "users.removeTitle": "删除用户",
      "users.removeSub": "删除 {login}？其登录立即失效，审计日志保留其操作记录。",
      "users.removed": "已删除 {login}",
      "users.scope": "管辖范围",
      "users.state": "状态",
      "users.created": "创建时间",
      "users.enable": "启用",
      "users.disable": "停用",
      "users.act.edit": "编辑",
      "users.act.password": "重置密码",
      "users.act.remove": "删除",
      "users.off": "已停用",
      "users.on": "正常",
      "users.count": "{n} 个用户",
      "map.north": "北",
      "map.noTiles": "底图未加载",
      "map.northTitle": "地图上方为正北",
      "map.zones": "分区",
      "map.details": "储罐与检测器",
      "map.plan": "总平面图",
      "map.zone.core": "核心控制区",
      "map.zone.key": "关键控制区",
      "map.zone.general": "一般控制区",
      "map.zone.closed_area": "封闭管理区",
      "map.zone.building": "建筑",
      "map.zone.gate": "出入口",
      "trend.expand": "放大",
      "trend.apply": "应用",
      "trend.earlier": "◀ 向前",
      "trend.later": "向后 ▶",
      "trend.add": "叠加同罐/同危险源测点…",
      "trend.remove": "移除",
      "trend.qualityNote": "红色标记：质量非正常的读数；拖动可放大，双击缩小；按住 Ctrl 点击测点可叠加",
      "inbox.title": "消息",
      "inbox.unreadOnly": "只看未读",
      "inbox.readAll": "全部已读",
      "inbox.empty": "没有消息",
      "inbox.kind.raised": "新报警",
      "inbox.kind.escalated": "升级",
      "inbox.kind.reminder": "提醒",
      "inbox.kind.cleared": "已恢复",
      "inbox.kind.closed": "已消警",
      "journal.alarms": "报警记录",
      "journal.shift": "交接班报告",
      "journal.audit": "审计日志",
      "journal.from": "从",
      "journal.to": "到",
      "journal.user": "人员",
      "journal.action": "动作",
      "journal.search": "查询",
      "journal.verify": "校验审计链",
      "journal.more": "加载更多",
      "journal.any": "全部",
      "journal.state.active": "报警中",
      "journal.state.shelved": "已搁置",
      "journal.state.suppressed": "已抑制",
      "journal.state.out_of_service": "停用",
      "journal.state.cleared": "已结束",
      "journal.lifecycle.normal": "已结束",
      "journal.lifecycle.unack_active": "报警中，未确认",
      "journal.lifecycle.ack_active": "报警中，已确认",
      "journal.lifecycle.unack_returned": "已恢复未确认",
      "journal.lifecycle.latched": "锁存",
      "journal.lifecycle.shelved": "已搁置",
      "journal.lifecycle.suppressed": "已抑制",
      "journal.lifecycle.out_of_service": "停用",
      "journal.loading": "查询中…",
      "journal.exporting": "正在导出…",
      "journal.verifying": "正在校验审计链…",
      "journal.count": "显示 {shown} / 共 {total} 条",
      "journal.auditCount": "共 {n} 条审计记录",
      "journal.chainOk": "审计链完整：{n} 条",
      "journal.chainBroken": "审计链在第 {seq} 条处断开",
      "journal.ackBy": "确认人",
      "journal.closed": "结束时间",
      "journal.raised": "本班报警",
      "journal.stillActive": "仍未消除",
      "journal.shelved": "搁置",
      "journal.medianAck": "确认中位时间",
      "journal.comments": "备注",
      "journal.target": "对象",
      "journal.remote": "地址",
      "journal.detail": "详情",
      "sources": "危险源",
      "conn.connecting": "连接中…",
      "conn.live": "实时",
      "conn.down": "已断开，重连中…",
      "live.banner": "页面数据非实时：自 {since} 起与服务器断开（{age}），显示的是断开前最后收到的数值，确认、搁置等操作已停用。",
      "live.offline": "连接断开：操作已停用",
      "status.stale": "非实时",
      "quality.age": "{age}前",
      "age.s": "{n}秒",
      "age.m": "{n}分钟",
      "age.h": "{n}小时",
      "age.d": "{n}天",
      "sum.alarms": "报警",
      "sum.faults": "故障",
      "sum.normal": "正常",
      "sum.stale": "非实时",
      "role.operator": "当班操作员",
      "role.safety_manager": "包保责任人",
      "role.park_regulator": "园区监管",
      "role.county_regulator": "县级监管",
      "role.tester": "测试人员",
      "role.admin": "系统管理员",
      "largeType": "大字",
      "logout": "退出",
      "close": "关闭",
      "cancel": "取消",
      "ok": "确定",
      "audio.on": "声音开",
      "audio.muted": "已静音",
      "audio.silence": "消音",
      "audio.blocked": "浏览器阻止了报警声音：点击此处启用",
      "banner.alarm": "新报警",
      "banner.grade": "特别管控（红色）",
      "login.title": "登录",
      "login.user": "用户名",
      "login.password": "密码",
      "login.submit": "登录",
      "login.failed": "用户名或密码错误",
      "login.limited": "尝试次数过多，请稍后再试",
      "login.expired": "登录已过期，请重新登录",
      "activeAlarms": "当前报警",
      "shelvedAlarms": "已搁置",
      "noAlarms": "无当前报警",
      "noShelved": "无搁置报警",
      "col.time": "时间",
      "col.priority": "优先级",
      "col.tag": "位号",
      "col.tagSource": "位号 / 危险源",
      "col.tagCondition": "位号 / 报警类型",
      "col.valueLimit": "报警值 / 限值",
      "col.source": "危险源",
      "col.condition": "报警类型",
      "col.state": "状态",
      "col.actions": "操作",
      "col.enterprise": "企业",
      "col.grade": "分级",
      "col.activeAlarms": "报警",
      "col.online": "在线率",
      "col.compliance": "合规",
      "col.reasons": "原因",
      "state.unack": "未确认",
      "state.ack": "已确认",
      "state.returned": "已恢复未确认",
      "state.latched": "锁存",
      "state.shelved": "已搁置",
      "state.escalated": "已升级",
      "act.ack": "确认",
      "act.ackAll": "全部确认",
      "act.shelve": "搁置",
      "act.unshelve": "取消搁置",
      "act.comment": "备注",
      "act.reported": "由企业端处置（联网上报）",
      "act.reset": "复位",
      "act.reason": "原因",
      "act.duration": "时长",
      "act.minutes": "分钟",
      "act.note": "内容",
      "act.failed": "操作失败",
      "act.unavailable": "此服务器不接受报警操作（仅显示）",
      "act.reasonCode": "原因代码",
      "act.ackProgress": "已确认 {done} / {total}",
      "act.ackFailed": "{n} 条失败",
      "err.400": "请求无法解析",
      "err.401": "未登录或登录已过期",
      "err.403": "无权执行此操作",
      "err.404": "对象不存在或不在您的权限范围内",
      "err.409": "当前状态下不能执行此操作",
      "err.413": "请求内容过大",
      "err.422": "输入有误",
      "err.429": "请求过于频繁，请稍后再试",
      "err.500": "服务器内部错误",
      "err.503": "服务暂不可用，请稍后再试",
      "act.approver": "确认人（第二人）账号",
      "act.approverPassword": "确认人密码",
      "act.shelveLimit": "最长 {n} 分钟",
      "act.fourEyes": "须第二人确认",
      "shelf.occurrences": "期间报警",
      "shelf.byReason": "搁置人 / 原因",
      "shelf.sinceUntil": "搁置时间 / 到期",
      "shelf.approvedBy": "确认人",
      "shelf.left": "剩余 {left}",
      "status.normal": "正常",
      "status.fault": "故障",
      "status.alarm": "报警",
      "status.nodata": "无数据",
      "quality.good": "正常",
      "quality.bad": "坏值",
      "quality.stale": "数据中断",
      "quality.comm-fail": "通讯故障",
      "quality.out-of-range": "超量程",
      "quality.flat": "数值冻结",
      "kind.level": "液位",
      "kind.temperature": "温度",
      "kind.pressure": "压力",
      "kind.esd_valve": "切断阀",
      "kind.gas_combustible": "可燃气体",
      "kind.gas_toxic": "有毒气体",
      "kind.oxygen": "氧气",
      "kind.lightning": "雷电预警",
      "esd.0": "开",
      "esd.1": "已切断",
      "esd.2": "旁路",
      "gas": "气体探测器",
      "gasLevels": "一级/二级",
      "gasDefault": "（国标默认）",
      "unit.storage": "储存单元",
      "unit.production": "生产单元",
      "exposed": "500 m内人数",
      "responsible": "包保责任人",
      "outOfService": "停用",
      "cond.dq": "数据质量",
      "cond.gas1": "一级报警",
      "cond.gas2": "二级报警",
      "cond.o2_low": "缺氧报警",
      "cond.o2_high": "富氧报警",
      "cond.hh": "高高报",
      "cond.h": "高报",
      "cond.l": "低报",
      "cond.ll": "低低报",
      "cond.first": "一级报警",
      "cond.second": "二级报警",
      "cond.low": "低限报警",
      "cond.high": "高限报警",
      "cond.stale": "数据中断",
      "cond.comm": "通讯故障",
      "cond.comm-fail": "通讯故障",
      "cond.comm_loss": "通讯中断",
      "cond.bad": "坏值",
      "cond.out-of-range": "超量程",
      "cond.sensor_fault": "仪表故障",
      "cond.roc": "变化率",
      "cond.flat": "数值冻结",
      "cond.flatline": "数值冻结",
      "cond.deviation": "液位偏差",
      "cond.esd": "切断阀动作",
      "prio.highest": "紧急",
      "prio.emergency": "紧急",
      "prio.critical": "紧急",
      "prio.urgent": "紧急",
      "prio.high": "高",
      "prio.medium": "中",
      "prio.low": "低",
      "prio.diagnostic": "诊断",
      "kpi.rate": "10分钟报警数",
      "kpi.flood": "报警泛滥",
      "kpi.floodYes": "泛滥中",
      "kpi.floodNo": "否",
      "kpi.active": "活动报警",
      "kpi.unack": "未确认",
      "kpi.chattering": "振荡报警",
      "kpi.floods24": "24h泛滥时段",
      "kpi.stale": "长期报警",
      "kpi.unavailable": "此服务器不提供报警KPI",
      "trend": "趋势",
      "trend.hint": "点击任一测点查看历史趋势",
      "trend.empty": "该时段无数据",
      "trend.loading": "加载中…",
      "grade.red": "特别管控",
      "grade.yellow": "重点关注",
      "grade.green": "一般监管",
      "grade.unknown": "未分级",
      "grade.unavailable": "此服务器不提供分级：按报警状态着色",
      "park.overview": "总览",
      "park.escalations": "升级工单",
      "park.compliance": "合规检查",
      "park.credibility": "数据可信度",
      "park.evidence": "违规证据",
      "park.hazard": "GB 18218 辨识",
      "park.uplink": "联网上报",
      "park.openControl": "在控制室查看",
      "park.pickEnterprise": "点击地图或列表中的企业查看详情",
      "park.sources": "危险源",
      "park.liveValues": "实时值",
      "park.reasons": "分级原因",
      "park.noReasons": "无",
      "compliant": "合规",
      "compliance.na": "不适用",
      "gaps": "存在缺项",
      "esc.sla": "时限",
      "esc.overdue": "已超时",
      "esc.sign": "签收",
      "esc.dispose": "处置反馈",
      "esc.close": "消警",
      "esc.reasonCode": "消警原因",
      "esc.disposition": "处置情况",
      "esc.empty": "无升级工单",
      "esc.unavailable": "此服务器不提供升级工单",
      "esc.step": "升级层级",
      "esc.status": "状态",
      "esc.alarm": "报警",
      "esc.opened": "发起时间",
      "esc.reason.handled": "已处置",
      "esc.reason.false_alarm": "误报",
      "esc.reason.equipment_fault": "设备故障",
      "esc.reason.maintenance": "检修作业",
      "esc.reason.test": "测试",
      "esc.stepName.operator": "值班操作员",
      "esc.stepName.operational": "操作负责人",
      "esc.stepName.technical": "技术负责人",
      "esc.stepName.principal": "主要负责人",
      "esc.stepName.park_regulator": "园区监管",
      "esc.stepName.county_regulator": "县级监管",
      "esc.st.open": "升级中",
      "esc.st.acknowledged": "企业已确认",
      "esc.st.signed": "监管已签收",
      "esc.st.awaiting_close": "待消警",
      "esc.st.awaiting_clear": "已消警，待报警恢复",
      "esc.st.closed": "已消警",
      "esc.st.resolved": "企业已确认，报警已恢复",
      "esc.st.lapsed": "搁置或抑制期间报警恢复，已结束",
      "esc.top": "已至最高层级",
      "esc.paused": "报警已搁置，计时暂停",
      "esc.inhibited": "被通讯中断抑制",
      "esc.answered": "已应答",
      "esc.folded": "同一设备另有 {n} 个测点通讯中断",
      "esc.returned": "已恢复",
      "esc.returnedUnack": "已恢复未确认",
      "esc.latched": "锁存",
      "compliance.unavailable": "此服务器不提供合规检查",
      "credibility.unavailable": "此服务器不提供数据可信度",
      "uplink.unavailable": "本平台未接收下级上报（站点文件无 receiver 配置）",
      "uplink.forbidden": "联网上报状态仅供监管人员和管理员查看",
      "uplink.empty": "尚未收到下级企业的上报",
      "uplink.title": "下级企业联网上报",
      "uplink.company": "企业编码",
      "uplink.state": "状态",
      "uplink.connected": "在线",
      "uplink.interrupted": "中断",
      "uplink.last": "最后上报",
      "uplink.online24h": "在线率（24小时）",
      "uplink.online30d": "在线率（30天）",
      "uplink.delay": "上报延迟",
      "uplink.resent": "补传消息（24小时）",
      "uplink.points": "测点在线",
      "uplink.backlog": "待传消息",
      "cred.enterprises": "企业数据可信度（近24小时）",
      "cred.since": "监测自 {time} 起不足 24 小时：按已监测的时段计算",
      "cred.sensors": "测点数",
      "cred.online": "在线率",
      "cred.completeness": "完整率",
      "cred.interruptions": "中断次数",
      "cred.flat": "数值冻结",
      "cred.longest": "最长中断",
      "cred.lost": "丢失消息",
      "cred.ingestLoss": "接入链路丢失消息 {n} 条",
      "cred.cause.broker_dropped": "代理丢弃",
      "cred.cause.sequence_gap": "设备序号跳变",
      "cred.cause.inbox_full": "接收队列满",
      "cred.shortSensors": "未达标测点（{n}）",
      "evidence.unavailable": "此服务器不提供违规证据",
      "evidence.empty": "无违规证据",
      "evidence.found": "发现时间",
      "evidence.kind": "类型",
      "evidence.range": "时间范围",
      "evidence.summary": "说明",
      "evidence.data": "数据",
      "evidence.kind.interruption": "数据中断",
      "evidence.kind.shelved_past_max": "超时搁置",
      "evidence.kind.esd_bypass": "紧急切断旁路",
      "evidence.kind.instrument_missing": "仪表缺失",
      "evidence.kind.commitment_missed": "未按时承诺",
      "evidence.kind.commitment_contradicted": "承诺与实况不符",
      "cond.commitment_missed": "未按时承诺",
      "cond.commitment_contradicted": "承诺与实况不符",
      "park.commitments": "安全承诺",
      "park.duty": "值班点名",
      "park.baobao": "包保履职",
      "park.patrols": "在线巡查",
      "park.supervision": "分类监管",
      "park.bulletins": "信息通报",
      "bulletin.unavailable": "信息通报接口不可用",
      "bulletin.regulatorsOnly": "信息通报仅对监管部门开放",
      "bulletin.notice": "信息通报按日、周或月排出企业名次：测点在线率对照目标，报警率，确认与处置用时，漏承诺、漏签到、包保逾期、未整改发现和数据质量问题。",
      "bulletin.issue": "发布通报",
      "bulletin.issued": "已发布的通报",
      "bulletin.none": "尚未发布通报",
      "bulletin.day": "日期",
      "bulletin.dayHint": "不填日期即为本期截至目前",
      "bulletin.scope.park": "园区",
      "bulletin.scope.county": "区县",
      "bulletin.period.daily": "日报",
      "bulletin.period.weekly": "周报",
      "bulletin.period.monthly": "月报",
      "bulletin.summary": "在线率 {rate}%，目标 {target}%，达标企业 {meeting}/{total}；统计 {from} 至 {to}",
      "bulletin.targetSource": "目标来源：",
      "bulletin.rule.interruption": "数据中断：无有效数据达 {seconds} 秒",
      "bulletin.rule.flat_line": "数据不变：数值不变达 {seconds} 秒",
      "bulletin.rule.out_of_range": "数据异常：超量程时间占比超过 {max_share_percent}%",
      "bulletin.onlineRate": "在线率 %",
      "bulletin.target": "目标",
      "bulletin.yes": "是",
      "bulletin.no": "否",
      "bulletin.download.xlsx": "下载 Excel",
      "bulletin.download.pdf": "下载 PDF",
      "bulletin.col.rank": "排名",
      "bulletin.col.enterprise_name": "企业",
      "bulletin.col.points": "测点",
      "bulletin.col.online_rate_percent": "在线率%",
      "bulletin.col.meets_target": "达标",
      "bulletin.col.alarms": "报警",
      "bulletin.col.alarms_per_1000_point_hours": "报警/千点时",
      "bulletin.col.median_ack_min": "确认中位(分)",
      "bulletin.col.median_disposition_min": "处置中位(分)",
      "bulletin.col.missed_commitments": "漏承诺",
      "bulletin.col.missed_check_ins": "漏签到",
      "bulletin.col.overdue_duties": "包保逾期",
      "bulletin.col.open_findings": "未整改",
      "bulletin.col.quality_violations": "数据质量问题",
      "class.unavailable": "分类监管接口不可用",
      "class.regulatorsOnly": "分类监管仅对监管部门开放",
      "class.notice": "分类监管按近 {days} 天的情况计算，每小时更新并保留历史；与每秒更新的实时红黄绿分级不同。",
      "class.special": "特别管控",
      "class.focus": "重点关注",
      "class.general": "一般监管",
      "class.class": "监管类别",
      "class.computed": "规则计算",
      "class.why": "依据规则",
      "class.figures": "近期指标",
      "class.noRule": "无规则命中",
      "class.history": "历史",
      "class.noHistory": "尚无历史记录",
      "class.override": "调整类别",
      "class.overridden": "人工调整：",
      "class.overrideBy": "人工调整",
      "class.confirmedBy": "人工确认",
      "class.reason": "调整理由",
      "metric.hazard_level": "危险源级别",
      "metric.regulator_escalations": "升级至监管",
      "metric.median_ack_min": "确认中位(分)",
      "metric.alarms_per_1000_point_hours": "报警/千点时",
      "metric.interruptions": "数据中断",
      "metric.routine_misses": "漏报漏签",
      "metric.open_findings": "待整改",
      "patrol.unavailable": "巡查接口不可用",
      "patrol.policy": "每家企业每 {days} 天巡查一次；每天随机抽查 {percent}% 的企业",
      "patrol.status.ok": "按期",
      "patrol.status.due": "待巡查",
      "patrol.spot": "今日抽查",
      "patrol.start": "开始巡查",
      "patrol.now": "现在",
      "patrol.last": "上次巡查",
      "patrol.due": "下次到期",
      "patrol.openFindings": "待整改",
      "patrol.kind": "类型",
      "patrol.kind.patrol": "巡查",
      "patrol.kind.spot_check": "抽查",
      "patrol.loading": "正在读取企业实时状态…",
      "patrol.walk": "巡查",
      "patrol.alarms": "当前报警",
      "patrol.escalations": "未结升级",
      "patrol.online": "测点在线",
      "patrol.commitment": "今日承诺",
      "patrol.checkIn": "本班签到",
      "patrol.duties": "包保逾期",
      "patrol.note": "巡查记录",
      "patrol.addFinding": "添加发现",
      "patrol.save": "保存巡查",
      "patrol.findingText": "发现的问题",
      "patrol.severity": "严重程度",
      "patrol.severity.general": "一般",
      "patrol.severity.major": "重大",
      "patrol.evidence": "存证",
      "patrol.rectify": "要求整改",
      "patrol.days": "整改期限（天）",
      "patrol.findings": "巡查发现与整改",
      "patrol.noFindings": "没有巡查发现",
      "patrol.foundAt": "发现时间",
      "patrol.foundBy": "巡查人",
      "patrol.finding": "发现",
      "patrol.rectifyBy": "整改期限",
      "patrol.answerText": "整改答复",
      "patrol.answer": "答复整改",
      "patrol.verify": "验收",
      "patrol.finding.noted": "已记录",
      "patrol.finding.open": "待整改",
      "patrol.finding.overdue": "整改逾期",
      "patrol.finding.answered": "已答复",
      "patrol.finding.verified": "已验收",
      "evidence.kind.patrol_finding": "巡查发现",
      "evidence.kind.rectification_overdue": "整改逾期",
      "cond.rectify": "整改通知",
      "baobao.unavailable": "包保履职接口不可用",
      "baobao.empty": "范围内没有重大危险源",
      "baobao.recordTitle": "记录履职",
      "baobao.checklist": "检查要点（未勾选即发现问题）",
      "baobao.dangers": "发现隐患数",
      "baobao.findings": "发现的问题和处理",
      "baobao.save": "提交记录",
      "baobao.person": "责任人",
      "baobao.duty": "职责",
      "baobao.every": "周期",
      "baobao.last": "上次履职",
      "baobao.due": "下次到期",
      "baobao.basis": "依据",
      "baobao.record": "记录履职",
      "baobao.days": "每 {n} 天",
      "baobao.before": "{day} 前",
      "baobao.status.ok": "按期",
      "baobao.status.overdue": "逾期",
      "baobao.confidence.confirmed": "已核实条文",
      "baobao.confidence.unconfirmed": "未核实条文",
      "baobao.confidence.tankwatch_default": "tankwatch 默认",
      "person.principal": "主要负责人",
      "person.technical": "技术负责人",
      "person.operational": "操作负责人",
      "evidence.kind.baobao_overdue": "包保履职逾期",
      "cond.baobao_overdue": "包保履职逾期",
      "evidence.kind.online_rate_low": "在线率未达标",
      "cond.online_rate_low": "在线率未达标",
      "duty.unavailable": "值班接口不可用",
      "duty.shift": "{shift} 班：{start} – {end}，须在 {due} 前签到",
      "duty.desks": "本班签到",
      "duty.desk": "值班岗位",
      "duty.state": "状态",
      "duty.who": "签到人",
      "duty.at": "签到时间",
      "duty.status.present": "已签到",
      "duty.status.missing": "未签到",
      "duty.status.due": "待签到",
      "duty.checkIn": "签到",
      "duty.call": "点名",
      "duty.random": "随机点名",
      "duty.randomCount": "抽查企业数",
      "duty.rollCalls": "点名记录（24 小时）",
      "duty.noCalls": "24 小时内没有点名",
      "duty.calledBy": "点名人",
      "duty.calledAt": "点名时间",
      "duty.answerBy": "应答时限",
      "duty.answered": "应答",
      "duty.answer": "应答",
      "duty.call.open": "待应答",
      "duty.call.answered": "已应答",
      "duty.call.late": "超时应答",
      "duty.call.missed": "未应答",
      "evidence.kind.duty_missed": "值班未签到",
      "evidence.kind.roll_call_missed": "点名未应答",
      "cond.duty_missed": "值班未签到",
      "cond.roll_call": "园区点名",
      "commit.unavailable": "安全承诺接口不可用",
      "commit.empty": "范围内没有需要承诺的单位",
      "commit.day": "日期",
      "commit.deadline": "每日 {time} 前承诺（{zone}）",
      "commit.state": "承诺状态",
      "commit.status.made": "已承诺",
      "commit.status.late": "迟报",
      "commit.status.missing": "未承诺",
      "commit.status.due": "待承诺",
      "commit.by": "承诺人",
      "commit.at": "承诺时间",
      "commit.unitsShort": "装置运行",
      "commit.runningOf": "{running} / {total} 套运行",
      "commit.work": "特殊作业",
      "commit.flags": "其他情况",
      "commit.risk": "风险等级",
      "commit.none": "无",
      "commit.title": "今日安全承诺",
      "commit.units": "生产装置（套）",
      "commit.total": "装置总数",
      "commit.running": "运行",
      "commit.parked": "停产",
      "commit.maintenance": "检修",
      "commit.note": "备注",
      "commit.submit": "提交承诺",
      "work.hot_work_special": "特级动火",
      "work.hot_work_1": "一级动火",
      "work.hot_work_2": "二级动火",
      "work.confined_space": "受限空间",
      "work.work_at_height": "高处作业",
      "work.lifting": "吊装作业",
      "work.blind_plate": "盲板抽堵",
      "work.road_breaking": "断路作业",
      "work.excavation": "动土作业",
      "work.temporary_power": "临时用电",
      "work.maintenance": "检维修作业",
      "flag.contractor_work": "承包商作业",
      "flag.trial_production": "试生产",
      "flag.start_stop": "开停车",
      "flag.pilot_test": "中试",
      "flag.major_hidden_danger": "重大隐患",
      "risk.1": "高风险（红）",
      "risk.2": "较大风险（橙）",
      "risk.3": "一般风险（黄）",
      "risk.4": "低风险（蓝）",
      "hazard.incomplete": "数据不完整（以设计最大量代替）",
      "hazard.unavailable": "此服务器不提供重大危险源辨识",
      "hazard.regulatory": "设计最大量（法定辨识）",
      "hazard.live": "实时储量（动态）",
      "hazard.level": "级别",
      "hazard.notMajor": "非重大危险源",
      "hazard.chemical": "物质",
      "hazard.q": "实际量 q (t)",
      "hazard.Q": "临界量 Q (t)",
      "replay.title": "场景与回放",
      "replay.speed": "速度",
      "replay.start": "开始",
      "replay.stop": "停止",
      "replay.kind": "类型",
      "replay.name": "名称",
      "replay.description": "说明",
      "replay.golden": "期望时间线",
      "replay.timeline": "报警时间线：期望 / 实际",
      "replay.scenario": "场景",
      "replay.feed": "录制数据",
      "replay.idle": "空闲",
      "replay.running": "运行中",
      "replay.finished": "已完成",
      "replay.expected": "期望",
      "replay.actual": "实际",
      "replay.match": "一致",
      "replay.mismatch": "不一致",
      "replay.unavailable": "此服务器不提供测试回放",
      "replay.noTimeline": "尚无时间线",
      "replay.anySensor": "任一测点（{n} 个）",
      "limit.hh": "高高",
      "limit.h": "高",
      "limit.l": "低",
      "limit.ll": "低低",
      "limit.first": "一级",
      "limit.second": "二级",
      "limit.low": "低限",
      "limit.high": "高限",
      "yes": "是",
      "no": "否",
    },
    "en": {
      "title": "Major Hazard Source Monitoring",
      "langButton": "中文",
      "loading": "Loading…",
      "loadError": "Cannot load the park configuration, retrying…",
      "notAvailable": "This server does not offer it",
      "apiError": "API error",
      "view.control": "Control room",
      "view.park": "Park regulator",
      "view.replay": "Test & replay",
      "view.journal": "Alarm journal",
      "view.api": "API",
      "api.loading": "Loading the API documentation…",
      "api.note": "API documentation (OpenAPI): requests sent from here carry your login and its permissions.",
      "view.settings": "Settings",
      "settings.alarms": "Alarm settings",
      "settings.routes": "Escalation routes",
      "settings.users": "Users",
      "settings.account": "My account",
      "settings.find": "Tag",
      "settings.loading": "Loading…",
      "settings.count": "{n} points",
      "settings.priorityRule": "Priority: HH/LL/second gas level high, H/L/first level/oxygen/rate of change medium, data quality low; raised one step on level 1–2 major hazard sources, HH/LL/second gas level critical on level 3–4 (tankwatch default). Settings change in the site file.",
      "settings.fromStandard": "standard's default",
      "settings.deadband": "Deadband",
      "settings.onDelay": "On-delay",
      "settings.offDelay": "off-delay",
      "settings.realarm": "Re-alarm every",
      "settings.stale": "Comm loss after",
      "settings.outOfService": "Tank out of service: alarms suppressed",
      "settings.esd": "ESD valve",
      "settings.hazardLevel": "Level {n} major hazard source",
      "settings.kindRange": "Kind / range",
      "settings.conditions": "Limits and priorities",
      "settings.timing": "Deadband and delays",
      "settings.quality": "Data quality",
      "settings.notes": "Notes",
      "settings.match.priority": "Priority",
      "settings.match.grade": "Grade",
      "settings.match.enterprise": "Enterprise",
      "settings.match.source": "Hazard source",
      "settings.match.sensor": "Point",
      "settings.match.condition": "Condition",
      "settings.match.quality": "Data quality",
      "settings.matchAll": "Every alarm",
      "settings.default": "tankwatch default",
      "settings.continue": "continues to later routes",
      "settings.minutes": "{n} min",
      "settings.repeat": "Reminder every {n} min until acknowledged",
      "settings.receivers": "Notifiers",
      "settings.routesIntro": "Alarms climb these routes step by step until acknowledged; a child route inherits what it does not set. Routes change in the site file.",
      "settings.inhibit": "Inhibition rules",
      "settings.inhibitRule": "While a {source} alarm is active, {target} alarms with the same {equal} do not escalate",
      "settings.label.device": "device",
      "settings.label.sensor": "point",
      "settings.label.tank": "tank",
      "settings.label.source": "hazard source",
      "settings.label.enterprise": "enterprise",
      "settings.none": "None",
      "settings.receiver.webhook": "Webhook",
      "settings.receiver.email": "Email",
      "settings.attempts": "up to {n} attempts",
      "settings.inboxOnly": "The page's notification centre only",
      "settings.grouping": "Group wait {wait} s · de-duplication window {dedup}",
      "account.change": "Change password",
      "account.current": "Current password",
      "account.new": "New password (8 or more characters)",
      "account.repeat": "New password again",
      "account.save": "Change",
      "account.mismatch": "The two new passwords differ",
      "account.changed": "Password changed; logins on other devices have ended",
      "users.add": "Add user",
      "users.login": "Login",
      "users.name": "Name",
      "users.role": "Role",
      "users.park": "Park",
      "users.county": "County",
      "users.password": "First password (8 or more characters)",
      "users.save": "Save",
      "users.scopeKind": "Scope",
      "users.scope.enterprises": "Enterprises",
      "users.scope.park": "Park",
      "users.scope.county": "County",
      "users.editTitle": "Edit user {login}",
      "users.addTitle": "Add user",
      "users.pickEnterprise": "Pick at least one enterprise",
      "users.saved": "Saved {login}",
      "users.added": "Added {login}",
      "users.enabled": "Enabled {login}",
      "users.disabled": "Disabled {login}; their logins ended at once",
      "users.resetTitle": "Reset password",
      "users.resetSub": "A new password for {login}; their current logins end at once. Give it to them in person or by a safe channel and ask them to change it after logging in.",
      "users.newPassword": "New password",
      "users.reset": "Password of {login} reset",
      "users.removeTitle": "Remove user",
      "users.removeSub": "Remove {login}? Their logins end at once; the audit journal keeps what they did.",
      "users.removed": "Removed {login}",
      "users.scope": "Scope",
      "users.state": "State",
      "users.created": "Created",
      "users.enable": "Enable",
      "users.disable": "Disable",
      "users.act.edit": "Edit",
      "users.act.password": "Reset password",
      "users.act.remove": "Remove",
      "users.off": "Disabled",
      "users.on": "Active",
      "users.count": "{n} users",
      "map.north": "N",
      "map.noTiles": "No base map",
      "map.northTitle": "North is up",
      "map.zones": "Zones",
      "map.details": "Tanks and detectors",
      "map.plan": "Plan image",
      "map.zone.core": "Core control zone",
      "map.zone.key": "Key control zone",
      "map.zone.general": "General control zone",
      "map.zone.closed_area": "Closed area",
      "map.zone.building": "Building",
      "map.zone.gate": "Gate",
      "trend.expand": "Enlarge",
      "trend.apply": "Apply",
      "trend.earlier": "◀ Earlier",
      "trend.later": "Later ▶",
      "trend.add": "Overlay a point of the same tank or source…",
      "trend.remove": "Remove",
      "trend.qualityNote": "Red marks: readings of bad quality; drag to zoom in, double-click to zoom out; Ctrl-click a point to overlay it",
      "inbox.title": "Messages",
      "inbox.unreadOnly": "Unread only",
      "inbox.readAll": "Mark all read",
      "inbox.empty": "No messages",
      "inbox.kind.raised": "New alarm",
      "inbox.kind.escalated": "Escalated",
      "inbox.kind.reminder": "Reminder",
      "inbox.kind.cleared": "Back to normal",
      "inbox.kind.closed": "Closed",
      "journal.alarms": "Alarms",
      "journal.shift": "Shift report",
      "journal.audit": "Audit",
      "journal.from": "From",
      "journal.to": "To",
      "journal.user": "Person",
      "journal.action": "Action",
      "journal.search": "Search",
      "journal.verify": "Verify chain",
      "journal.more": "More",
      "journal.any": "Any",
      "journal.state.active": "Active",
      "journal.state.shelved": "Shelved",
      "journal.state.suppressed": "Suppressed",
      "journal.state.out_of_service": "Out of service",
      "journal.state.cleared": "Ended",
      "journal.lifecycle.normal": "Ended",
      "journal.lifecycle.unack_active": "Active, unacknowledged",
      "journal.lifecycle.ack_active": "Active, acknowledged",
      "journal.lifecycle.unack_returned": "Returned, unacknowledged",
      "journal.lifecycle.latched": "Latched",
      "journal.lifecycle.shelved": "Shelved",
      "journal.lifecycle.suppressed": "Suppressed",
      "journal.lifecycle.out_of_service": "Out of service",
      "journal.loading": "Loading…",
      "journal.exporting": "Exporting…",
      "journal.verifying": "Verifying the audit chain…",
      "journal.count": "{shown} of {total}",
      "journal.auditCount": "{n} audit entries",
      "journal.chainOk": "Audit chain intact: {n} entries",
      "journal.chainBroken": "Audit chain broken at entry {seq}",
      "journal.ackBy": "Acknowledged by",
      "journal.closed": "Ended",
      "journal.raised": "Raised this shift",
      "journal.stillActive": "Still active",
      "journal.shelved": "Shelved",
      "journal.medianAck": "Median time to ack",
      "journal.comments": "Comments",
      "journal.target": "Target",
      "journal.remote": "Address",
      "journal.detail": "Detail",
      "sources": "Hazard sources",
      "conn.connecting": "Connecting…",
      "conn.live": "Live",
      "conn.down": "Disconnected, reconnecting…",
      "live.banner": "Not live: disconnected from the server since {since} ({age}). Values are the last ones received before; acknowledge, shelve and other actions are disabled.",
      "live.offline": "Disconnected: actions are disabled",
      "status.stale": "Not live",
      "quality.age": "{age} ago",
      "age.s": "{n} s",
      "age.m": "{n} min",
      "age.h": "{n} h",
      "age.d": "{n} d",
      "sum.alarms": "alarms",
      "sum.faults": "faults",
      "sum.normal": "normal",
      "sum.stale": "not live",
      "role.operator": "on-duty operator",
      "role.safety_manager": "responsible person",
      "role.park_regulator": "park regulator",
      "role.county_regulator": "county regulator",
      "role.tester": "tester",
      "role.admin": "administrator",
      "largeType": "Large type",
      "logout": "Log out",
      "close": "Close",
      "cancel": "Cancel",
      "ok": "OK",
      "audio.on": "Sound on",
      "audio.muted": "Muted",
      "audio.silence": "Silence",
      "audio.blocked": "The browser blocked alarm sound: click here to enable it",
      "banner.alarm": "New alarm",
      "banner.grade": "Red grade (special control)",
      "login.title": "Log in",
      "login.user": "User name",
      "login.password": "Password",
      "login.submit": "Log in",
      "login.failed": "Wrong user name or password",
      "login.limited": "Too many attempts, try again later",
      "login.expired": "Session expired, please log in again",
      "activeAlarms": "Active alarms",
      "shelvedAlarms": "Shelved",
      "noAlarms": "No active alarms",
      "noShelved": "No shelved alarms",
      "col.time": "Time",
      "col.priority": "Priority",
      "col.tag": "Tag",
      "col.tagSource": "Tag / hazard source",
      "col.tagCondition": "Tag / condition",
      "col.valueLimit": "Value / limit",
      "col.source": "Hazard source",
      "col.condition": "Condition",
      "col.state": "State",
      "col.actions": "Actions",
      "col.enterprise": "Enterprise",
      "col.grade": "Grade",
      "col.activeAlarms": "Alarms",
      "col.online": "Online",
      "col.compliance": "Compliance",
      "col.reasons": "Reasons",
      "state.unack": "Unacknowledged",
      "state.ack": "Acknowledged",
      "state.returned": "Returned, unack.",
      "state.latched": "Latched",
      "state.shelved": "Shelved",
      "state.escalated": "Escalated",
      "act.ack": "Ack",
      "act.ackAll": "Ack all",
      "act.shelve": "Shelve",
      "act.unshelve": "Unshelve",
      "act.comment": "Comment",
      "act.reported": "handled at the enterprise (uplinked)",
      "act.reset": "Reset",
      "act.reason": "Reason",
      "act.duration": "Duration",
      "act.minutes": "minutes",
      "act.note": "Text",
      "act.failed": "Action failed",
      "act.unavailable": "This server takes no alarm actions (display only)",
      "act.reasonCode": "Reason code",
      "act.ackProgress": "acknowledged {done} / {total}",
      "act.ackFailed": "{n} failed",
      "err.400": "The request could not be read",
      "err.401": "Not logged in, or the login expired",
      "err.403": "You may not do this",
      "err.404": "Not found, or outside what you may see",
      "err.409": "Not possible in the current state",
      "err.413": "The request is too large",
      "err.422": "Invalid input",
      "err.429": "Too many requests; try again shortly",
      "err.500": "Server error",
      "err.503": "Service unavailable; try again shortly",
      "act.approver": "Approver (second person) login",
      "act.approverPassword": "Approver's password",
      "act.shelveLimit": "at most {n} min",
      "act.fourEyes": "needs a second person's approval",
      "shelf.occurrences": "Raised meanwhile",
      "shelf.byReason": "Shelved by / reason",
      "shelf.sinceUntil": "Since / until",
      "shelf.approvedBy": "approved by",
      "shelf.left": "{left} left",
      "status.normal": "Normal",
      "status.fault": "Fault",
      "status.alarm": "Alarm",
      "status.nodata": "No data",
      "quality.good": "Good",
      "quality.bad": "Bad value",
      "quality.stale": "Stale",
      "quality.comm-fail": "Comm. failure",
      "quality.out-of-range": "Out of range",
      "quality.flat": "Flat-line",
      "kind.level": "Level",
      "kind.temperature": "Temp.",
      "kind.pressure": "Pressure",
      "kind.esd_valve": "ESD valve",
      "kind.gas_combustible": "Combustible gas",
      "kind.gas_toxic": "Toxic gas",
      "kind.oxygen": "Oxygen",
      "kind.lightning": "Lightning warning",
      "esd.0": "Open",
      "esd.1": "Tripped",
      "esd.2": "Bypassed",
      "gas": "Gas detectors",
      "gasLevels": "L1/L2",
      "gasDefault": " (standard default)",
      "unit.storage": "Storage unit",
      "unit.production": "Production unit",
      "exposed": "People within 500 m",
      "responsible": "Responsible",
      "outOfService": "Out of service",
      "cond.dq": "Data quality",
      "cond.gas1": "Gas level 1",
      "cond.gas2": "Gas level 2",
      "cond.o2_low": "Oxygen low",
      "cond.o2_high": "Oxygen high",
      "cond.hh": "High-high",
      "cond.h": "High",
      "cond.l": "Low",
      "cond.ll": "Low-low",
      "cond.first": "Gas level 1",
      "cond.second": "Gas level 2",
      "cond.low": "Low limit",
      "cond.high": "High limit",
      "cond.stale": "Stale data",
      "cond.comm": "Comm. failure",
      "cond.comm-fail": "Comm. failure",
      "cond.comm_loss": "Comm. loss",
      "cond.bad": "Bad value",
      "cond.out-of-range": "Out of range",
      "cond.sensor_fault": "Sensor fault",
      "cond.roc": "Rate of change",
      "cond.flat": "Flat-line",
      "cond.flatline": "Flat-line",
      "cond.deviation": "Level deviation",
      "cond.esd": "ESD operated",
      "prio.highest": "Emergency",
      "prio.emergency": "Emergency",
      "prio.critical": "Critical",
      "prio.urgent": "Emergency",
      "prio.high": "High",
      "prio.medium": "Medium",
      "prio.low": "Low",
      "prio.diagnostic": "Diagnostic",
      "kpi.rate": "Alarms / 10 min",
      "kpi.flood": "Alarm flood",
      "kpi.floodYes": "FLOOD",
      "kpi.floodNo": "no",
      "kpi.active": "Active",
      "kpi.unack": "Unack.",
      "kpi.chattering": "Chattering",
      "kpi.floods24": "Floods (24 h)",
      "kpi.stale": "Stale (>24 h)",
      "kpi.unavailable": "This server offers no alarm KPIs",
      "trend": "Trend",
      "trend.hint": "Click any measurement for its history",
      "trend.empty": "No data in this period",
      "trend.loading": "Loading…",
      "grade.red": "Special control",
      "grade.yellow": "Attention",
      "grade.green": "General",
      "grade.unknown": "Not graded",
      "grade.unavailable": "This server offers no grades: coloured by alarm state",
      "park.overview": "Overview",
      "park.escalations": "Escalations",
      "park.compliance": "Compliance",
      "park.credibility": "Data credibility",
      "park.evidence": "Evidence",
      "park.hazard": "GB 18218",
      "park.uplink": "Uplink",
      "park.openControl": "Open in control room",
      "park.pickEnterprise": "Click an enterprise on the map or in the list",
      "park.sources": "Hazard sources",
      "park.liveValues": "Live values",
      "park.reasons": "Grade reasons",
      "park.noReasons": "none",
      "compliant": "Compliant",
      "compliance.na": "Not applicable",
      "gaps": "Gaps",
      "esc.sla": "SLA",
      "esc.overdue": "Overdue",
      "esc.sign": "Sign",
      "esc.dispose": "Disposition",
      "esc.close": "Close",
      "esc.reasonCode": "Reason code",
      "esc.disposition": "Disposition",
      "esc.empty": "No escalations",
      "esc.unavailable": "This server offers no escalations",
      "esc.step": "Step",
      "esc.status": "Status",
      "esc.alarm": "Alarm",
      "esc.opened": "Opened",
      "esc.reason.handled": "Handled",
      "esc.reason.false_alarm": "False alarm",
      "esc.reason.equipment_fault": "Equipment fault",
      "esc.reason.maintenance": "Maintenance",
      "esc.reason.test": "Test",
      "esc.stepName.operator": "On-duty operator",
      "esc.stepName.operational": "Operations lead",
      "esc.stepName.technical": "Technical lead",
      "esc.stepName.principal": "Principal",
      "esc.stepName.park_regulator": "Park regulator",
      "esc.stepName.county_regulator": "County regulator",
      "esc.st.open": "Escalating",
      "esc.st.acknowledged": "Acknowledged by the enterprise",
      "esc.st.signed": "Signed by the regulator",
      "esc.st.awaiting_close": "Awaiting close",
      "esc.st.awaiting_clear": "Closed, awaiting alarm clear",
      "esc.st.closed": "Closed",
      "esc.st.resolved": "Acknowledged by the enterprise, back to normal",
      "esc.st.lapsed": "Returned while shelved or suppressed; ended",
      "esc.top": "Top of the chain",
      "esc.paused": "Alarm shelved, timer paused",
      "esc.inhibited": "Inhibited by a comm-loss",
      "esc.answered": "Answered",
      "esc.folded": "{n} more points of this device lost communication",
      "esc.returned": "back to normal",
      "esc.returnedUnack": "returned, unacknowledged",
      "esc.latched": "latched",
      "compliance.unavailable": "This server offers no compliance check",
      "credibility.unavailable": "This server offers no data credibility",
      "uplink.unavailable": "This instance receives from no lower tier (no receiver section in its site file)",
      "uplink.forbidden": "Upload status is for regulators and administrators",
      "uplink.empty": "No lower-tier enterprise has uploaded yet",
      "uplink.title": "Lower-tier enterprises uploading here",
      "uplink.company": "Company code",
      "uplink.state": "State",
      "uplink.connected": "connected",
      "uplink.interrupted": "interrupted",
      "uplink.last": "Last message",
      "uplink.online24h": "Online (24 h)",
      "uplink.online30d": "Online (30 d)",
      "uplink.delay": "Upload delay",
      "uplink.resent": "Resent (24 h)",
      "uplink.points": "Points online",
      "uplink.backlog": "Backlog",
      "cred.enterprises": "Data credibility by enterprise (last 24 h)",
      "cred.since": "Monitoring began {time}, less than 24 hours ago: figures cover the time monitored",
      "cred.sensors": "Points",
      "cred.online": "Online",
      "cred.completeness": "Complete",
      "cred.interruptions": "Interruptions",
      "cred.flat": "Flat-lines",
      "cred.longest": "Longest gap",
      "cred.lost": "Messages lost",
      "cred.ingestLoss": "{n} messages lost on the way in",
      "cred.cause.broker_dropped": "dropped by the broker",
      "cred.cause.sequence_gap": "device counter gaps",
      "cred.cause.inbox_full": "inbox full",
      "cred.shortSensors": "Points below standard ({n})",
      "evidence.unavailable": "This server offers no evidence",
      "evidence.empty": "No evidence entries",
      "evidence.found": "Found",
      "evidence.kind": "Kind",
      "evidence.range": "Time range",
      "evidence.summary": "Summary",
      "evidence.data": "Data",
      "evidence.kind.interruption": "Data interruption",
      "evidence.kind.shelved_past_max": "Shelved past maximum",
      "evidence.kind.esd_bypass": "ESD bypassed",
      "evidence.kind.instrument_missing": "Instrument missing",
      "evidence.kind.commitment_missed": "Commitment missed",
      "evidence.kind.commitment_contradicted": "Commitment contradicted",
      "cond.commitment_missed": "Commitment missed",
      "cond.commitment_contradicted": "Commitment contradicted",
      "park.commitments": "Safety commitments",
      "park.duty": "Duty & roll call",
      "park.baobao": "Responsible persons",
      "park.patrols": "Patrols",
      "park.supervision": "Supervision class",
      "park.bulletins": "Bulletins",
      "bulletin.unavailable": "Bulletins API not available",
      "bulletin.regulatorsOnly": "Bulletins are for regulators only",
      "bulletin.notice": "A bulletin ranks the enterprises over a day, week or month: online rate of points against the target, alarm rate, acknowledgement and disposition times, missed commitments and check-ins, overdue duties, open findings and data-quality violations.",
      "bulletin.issue": "Issue bulletin",
      "bulletin.issued": "Issued bulletins",
      "bulletin.none": "No bulletin issued yet",
      "bulletin.day": "Date",
      "bulletin.dayHint": "without a date: the current period to date",
      "bulletin.scope.park": "Park",
      "bulletin.scope.county": "County",
      "bulletin.period.daily": "Daily",
      "bulletin.period.weekly": "Weekly",
      "bulletin.period.monthly": "Monthly",
      "bulletin.summary": "Online rate {rate}%, target {target}%, enterprises meeting it {meeting}/{total}; measured {from} to {to}",
      "bulletin.targetSource": "Target source:",
      "bulletin.rule.interruption": "Interruption: no good data for {seconds} s",
      "bulletin.rule.flat_line": "Flat line: unchanged for {seconds} s",
      "bulletin.rule.out_of_range": "Out of range: more than {max_share_percent}% of the period",
      "bulletin.onlineRate": "online rate %",
      "bulletin.target": "target",
      "bulletin.yes": "yes",
      "bulletin.no": "no",
      "bulletin.download.xlsx": "Download Excel",
      "bulletin.download.pdf": "Download PDF",
      "bulletin.col.rank": "Rank",
      "bulletin.col.enterprise_name": "Enterprise",
      "bulletin.col.points": "Points",
      "bulletin.col.online_rate_percent": "Online %",
      "bulletin.col.meets_target": "Meets target",
      "bulletin.col.alarms": "Alarms",
      "bulletin.col.alarms_per_1000_point_hours": "Alarms / 1,000 point-h",
      "bulletin.col.median_ack_min": "Median ack (min)",
      "bulletin.col.median_disposition_min": "Median disposition (min)",
      "bulletin.col.missed_commitments": "Missed commitments",
      "bulletin.col.missed_check_ins": "Missed check-ins",
      "bulletin.col.overdue_duties": "Overdue duties",
      "bulletin.col.open_findings": "Open findings",
      "bulletin.col.quality_violations": "Data-quality violations",
      "class.unavailable": "Supervision API not available",
      "class.regulatorsOnly": "Supervision classes are for regulators",
      "class.notice": "Classes are computed over the last {days} days, updated hourly with their history kept; they are not the live red/yellow/green grade, which changes every second.",
      "class.special": "Special control",
      "class.focus": "Close attention",
      "class.general": "General",
      "class.class": "Class",
      "class.computed": "By the rules",
      "class.why": "Rules matched",
      "class.figures": "Figures",
      "class.noRule": "no rule matched",
      "class.history": "History",
      "class.noHistory": "No history yet",
      "class.override": "Set class",
      "class.overridden": "Set by hand:",
      "class.overrideBy": "set by hand",
      "class.confirmedBy": "confirmed by hand",
      "class.reason": "Reason",
      "metric.hazard_level": "hazard level",
      "metric.regulator_escalations": "escalated to regulators",
      "metric.median_ack_min": "median ack (min)",
      "metric.alarms_per_1000_point_hours": "alarms per 1,000 point-hours",
      "metric.interruptions": "interruptions",
      "metric.routine_misses": "routines missed",
      "metric.open_findings": "to rectify",
      "patrol.unavailable": "Patrols API not available",
      "patrol.policy": "Every enterprise patrolled every {days} days; {percent}% drawn at random for a spot check each day",
      "patrol.status.ok": "On time",
      "patrol.status.due": "Due",
      "patrol.spot": "Spot check today",
      "patrol.start": "Patrol",
      "patrol.now": "now",
      "patrol.last": "Last patrol",
      "patrol.due": "Next due",
      "patrol.openFindings": "To rectify",
      "patrol.kind": "Kind",
      "patrol.kind.patrol": "Patrol",
      "patrol.kind.spot_check": "Spot check",
      "patrol.loading": "Reading the enterprise's live state…",
      "patrol.walk": "Patrol",
      "patrol.alarms": "Active alarms",
      "patrol.escalations": "Open escalations",
      "patrol.online": "Points online",
      "patrol.commitment": "Today's commitment",
      "patrol.checkIn": "Shift check-in",
      "patrol.duties": "Duties overdue",
      "patrol.note": "Patrol note",
      "patrol.addFinding": "Add finding",
      "patrol.save": "Save patrol",
      "patrol.findingText": "What was found",
      "patrol.severity": "Severity",
      "patrol.severity.general": "General",
      "patrol.severity.major": "Major",
      "patrol.evidence": "On record",
      "patrol.rectify": "Rectify",
      "patrol.days": "Days to rectify",
      "patrol.findings": "Findings and rectification",
      "patrol.noFindings": "No findings",
      "patrol.foundAt": "Found",
      "patrol.foundBy": "By",
      "patrol.finding": "Finding",
      "patrol.rectifyBy": "Rectify by",
      "patrol.answerText": "Answer",
      "patrol.answer": "Answer",
      "patrol.verify": "Verify",
      "patrol.finding.noted": "Noted",
      "patrol.finding.open": "Open",
      "patrol.finding.overdue": "Overdue",
      "patrol.finding.answered": "Answered",
      "patrol.finding.verified": "Verified",
      "evidence.kind.patrol_finding": "Patrol finding",
      "evidence.kind.rectification_overdue": "Rectification overdue",
      "cond.rectify": "Rectification request",
      "baobao.unavailable": "Responsible-person duties API not available",
      "baobao.empty": "No major hazard source in scope",
      "baobao.recordTitle": "Record a duty done",
      "baobao.checklist": "Checklist (unticked: a problem found)",
      "baobao.dangers": "Hidden dangers found",
      "baobao.findings": "Findings and what was done",
      "baobao.save": "Save record",
      "baobao.person": "Responsible person",
      "baobao.duty": "Duty",
      "baobao.every": "Period",
      "baobao.last": "Last done",
      "baobao.due": "Next due",
      "baobao.basis": "Basis",
      "baobao.record": "Record duty",
      "baobao.days": "every {n} days",
      "baobao.before": "before {day}",
      "baobao.status.ok": "On time",
      "baobao.status.overdue": "Overdue",
      "baobao.confidence.confirmed": "rule text read",
      "baobao.confidence.unconfirmed": "rule text not read",
      "baobao.confidence.tankwatch_default": "tankwatch default",
      "person.principal": "Principal",
      "person.technical": "Technical",
      "person.operational": "Operational",
      "evidence.kind.baobao_overdue": "Duty overdue",
      "cond.baobao_overdue": "Duty overdue",
      "evidence.kind.online_rate_low": "Online rate below target",
      "cond.online_rate_low": "Online rate below target",
      "duty.unavailable": "Duty API not available",
      "duty.shift": "{shift} shift: {start} – {end}; check in by {due}",
      "duty.desks": "This shift's check-ins",
      "duty.desk": "Desk",
      "duty.state": "State",
      "duty.who": "Checked in by",
      "duty.at": "At",
      "duty.status.present": "Present",
      "duty.status.missing": "Missing",
      "duty.status.due": "Due",
      "duty.checkIn": "Check in",
      "duty.call": "Roll call",
      "duty.random": "Random roll call",
      "duty.randomCount": "Enterprises to call",
      "duty.rollCalls": "Roll calls (24 h)",
      "duty.noCalls": "No roll call in the last 24 hours",
      "duty.calledBy": "Called by",
      "duty.calledAt": "Called at",
      "duty.answerBy": "Answer by",
      "duty.answered": "Answered",
      "duty.answer": "Answer",
      "duty.call.open": "Open",
      "duty.call.answered": "Answered",
      "duty.call.late": "Answered late",
      "duty.call.missed": "Missed",
      "evidence.kind.duty_missed": "Check-in missed",
      "evidence.kind.roll_call_missed": "Roll call unanswered",
      "cond.duty_missed": "Check-in missed",
      "cond.roll_call": "Roll call",
      "commit.unavailable": "Commitments API not available",
      "commit.empty": "No unit in scope makes commitments",
      "commit.day": "Day",
      "commit.deadline": "Due daily by {time} ({zone})",
      "commit.state": "State",
      "commit.status.made": "Made",
      "commit.status.late": "Late",
      "commit.status.missing": "Missing",
      "commit.status.due": "Due",
      "commit.by": "Committed by",
      "commit.at": "Made at",
      "commit.unitsShort": "Units running",
      "commit.runningOf": "{running} of {total} running",
      "commit.work": "Special work",
      "commit.flags": "Other",
      "commit.risk": "Risk grade",
      "commit.none": "none",
      "commit.title": "Today's safety commitment",
      "commit.units": "Production units",
      "commit.total": "Total",
      "commit.running": "Running",
      "commit.parked": "Parked",
      "commit.maintenance": "Under maintenance",
      "commit.note": "Note",
      "commit.submit": "Commit",
      "work.hot_work_special": "Hot work, special",
      "work.hot_work_1": "Hot work, class 1",
      "work.hot_work_2": "Hot work, class 2",
      "work.confined_space": "Confined space",
      "work.work_at_height": "Work at height",
      "work.lifting": "Lifting",
      "work.blind_plate": "Blind plates",
      "work.road_breaking": "Road breaking",
      "work.excavation": "Excavation",
      "work.temporary_power": "Temporary power",
      "work.maintenance": "Maintenance work",
      "flag.contractor_work": "Contractor work",
      "flag.trial_production": "Trial production",
      "flag.start_stop": "Start-up / shutdown",
      "flag.pilot_test": "Pilot test",
      "flag.major_hidden_danger": "Major hidden danger",
      "risk.1": "High (red)",
      "risk.2": "Considerable (orange)",
      "risk.3": "General (yellow)",
      "risk.4": "Low (blue)",
      "hazard.incomplete": "incomplete (design maximum stands in)",
      "hazard.unavailable": "This server offers no hazard assessment",
      "hazard.regulatory": "Design maximum (regulatory)",
      "hazard.live": "Live inventory (dynamic)",
      "hazard.level": "Level",
      "hazard.notMajor": "Not a major hazard",
      "hazard.chemical": "Substance",
      "hazard.q": "Quantity q (t)",
      "hazard.Q": "Threshold Q (t)",
      "replay.title": "Scenarios and replay",
      "replay.speed": "Speed",
      "replay.start": "Start",
      "replay.stop": "Stop",
      "replay.kind": "Kind",
      "replay.name": "Name",
      "replay.description": "Description",
      "replay.golden": "Golden timeline",
      "replay.timeline": "Alarm timeline: expected / actual",
      "replay.scenario": "Scenario",
      "replay.feed": "Recorded feed",
      "replay.idle": "Idle",
      "replay.running": "Running",
      "replay.finished": "Finished",
      "replay.expected": "Expected",
      "replay.actual": "Actual",
      "replay.match": "match",
      "replay.mismatch": "mismatch",
      "replay.unavailable": "This server offers no test replay",
      "replay.noTimeline": "No timeline yet",
      "replay.anySensor": "any sensor (of {n})",
      "limit.hh": "HH",
      "limit.h": "H",
      "limit.l": "L",
      "limit.ll": "LL",
      "limit.first": "1st",
      "limit.second": "2nd",
      "limit.low": "low",
      "limit.high": "high",
      "yes": "yes",
      "no": "no",
    },
  };
  const LANG_KEY = "tankwatch.lang";
  const TOKEN_KEY = "tankwatch.token";
  const LARGE_KEY = "tankwatch.large";
  const MUTE_KEY = "tankwatch.muted";
  let lang = readLang();

  function storageGet(store, key) {
    try {
      return window[store].getItem(key);
    } catch (_e) {
      return null; // storage may be disabled
    }
  }

  function storageSet(store, key, value) {
    try {
      if (value === null) window[store].removeItem(key);
      else window[store].setItem(key, value);
    } catch (_e) {
      // storage may be disabled; the setting holds for this page only
    }
  }

  // ?lang=en (or zh-CN) in the address wins, so a wall screen can be set up by URL alone.
  function readLang() {
    const asked = new URLSearchParams(window.location.search).get("lang");
    if (asked && STRINGS[asked]) {
      storageSet("localStorage", LANG_KEY, asked);
      return asked;
    }
    const saved = storageGet("localStorage", LANG_KEY);
    return saved && STRINGS[saved] ? saved : "zh-CN";
  }

  function t(key, fallback) {
    const table = STRINGS[lang];
    if (key in table) return table[key];
    if (key in STRINGS["zh-CN"]) return STRINGS["zh-CN"][key];
    return fallback === undefined ? key : fallback;
  }

  // A string with {name} placeholders filled in.
  function tf(key, values) {
    return t(key).replace(/\{(\w+)\}/g, function (all, name) { return name in values ? String(values[name]) : all; });
  }

  // How old something is, in the largest unit that fits: "35秒", "4分钟", "2 h".
  function formatAge(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 120) return tf("age.s", { n: s });
    if (s < 7200) return tf("age.m", { n: Math.floor(s / 60) });
    if (s < 172800) return tf("age.h", { n: Math.floor(s / 3600) });
    return tf("age.d", { n: Math.floor(s / 86400) });
  }

  // ----- small DOM helpers -------------------------------------------------------------------------
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // An element showing data (names from the site file, what people typed), not page text: it stays as it is in
  // either language (translate="no"), which is also how the language test tells data from untranslated text.
  function dataEl(tag, cls, text) {
    const node = el(tag, cls, text);
    node.translate = false;
    return node;
  }

  // The half of a "中文 / English" text that fits the page's language (whole when it has no such halves).
  function bilingualText(text) {
    const parts = String(text || "").split(" / ");
    if (parts.length !== 2) return String(text || "");
    return lang === "en" ? parts[1] : parts[0];
  }

  // The SVG namespace, taken from the map element the page already has (no URL literal in the script).
  const SVG_NS = document.getElementById("park-map").namespaceURI;
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const key in attrs || {}) node.setAttribute(key, attrs[key]);
    return node;
  }

  // Write only when different: the cheapest DOM update is the one not made.
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function setAttr(node, name, value) {
    if (node.getAttribute(name) !== value) node.setAttribute(name, value);
  }

  function button(labelKey, onClick, cls) {
    const node = el("button", "tool" + (cls ? " " + cls : ""), t(labelKey));
    node.type = "button";
    node.setAttribute("data-i18n", labelKey);
    node.addEventListener("click", onClick);
    return node;
  }

  // A muted sentence standing where a view's data would be, for APIs that are missing or failing.
  function note(node, key, detail) {
    const p = el("p", "api-note", t(key) + (detail ? " (" + detail + ")" : ""));
    p.setAttribute("data-i18n", key);
    node.replaceChildren(p);
    return p;
  }

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function formatClock(date) {
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
  }

  function formatTime(ms) {
    const date = new Date(ms);
    const time = pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
    const today = new Date(serverNow());
    if (date.toDateString() === today.toDateString()) return time;
    return pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " + time;
  }

  function formatDuration(ms) {
    const negative = ms < 0;
    let s = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    return (negative ? "-" : "") + (h ? h + ":" + pad(m) : String(m)) + ":" + pad(s);
  }

  function decimalsFor(sensor) {
    const span = sensor.range[1] - sensor.range[0];
    if (span <= 5) return 3;
    if (span <= 50) return 2;
    return 1;
  }

  function formatValue(sensor, value) {
    if (value === null || value === undefined || typeof value !== "number") return "—";
    return value.toFixed(decimalsFor(sensor));
  }

  function percent(value) {
    if (value === null || value === undefined || typeof value !== "number") return "—";
    return (value <= 1 ? value * 100 : value).toFixed(1) + " %";
  }

  // Time fields may come as epoch ms or ISO text, depending on the API.
  function toMs(value) {
    if (typeof value === "number") return value;
    if (typeof value === "string") {
      const ms = Date.parse(value);
      return Number.isNaN(ms) ? null : ms;
    }
    return null;
  }

  // ----- events between the core and the views -----------------------------------------------------
  const listeners = {};
  function on(name, fn) {
    (listeners[name] = listeners[name] || []).push(fn);
  }
  function emit(name, data) {
    for (const fn of listeners[name] || []) {
      try {
        fn(data);
      } catch (err) {
        // one broken view must never stop the others
        window.console.error("tankwatch view failed on", name, err);
      }
    }
  }

  // ----- API access --------------------------------------------------------------------------------
  // An API failure; its message is in the page's language: the server's own Chinese reason where it gives one,
  // else what the status means here, with the server's words after it.
  class ApiError extends Error {
    constructor(status, detail, translated) {
      super(translated || (t("err." + status, "") ? t("err." + status) + (detail ? "（" + detail + "）" : "")
        : "HTTP " + status + (detail ? ": " + detail : "")));
      this.status = status;
      this.detail = detail;
    }
  }

  let token = storageGet("sessionStorage", TOKEN_KEY);
  let openapi = null; // the server's OpenAPI document: which routes exist and where to log in
  const paths = new Set();

  function templateOf(path) {
    return path.replace(/\{[^}]*\}/g, "{}");
  }

  // Whether the server offers a route; unknown (no OpenAPI) counts as yes and the call itself decides.
  function has(path, method) {
    if (!openapi) return true;
    const entry = openapi.paths[Object.keys(openapi.paths).find(function (p) {
      return templateOf(p) === templateOf(path);
    })];
    if (!entry) return false;
    return method ? Boolean(entry[method.toLowerCase()]) : true;
  }

  // The first OpenAPI path matching a pattern, e.g. the credibility route whatever its exact name.
  function findPath(pattern, method) {
    if (!openapi) return null;
    for (const p of Object.keys(openapi.paths)) {
      if (pattern.test(p) && (!method || openapi.paths[p][method])) return p;
    }
    return null;
  }

  function translatedDetail(body) {
    return body && typeof body.detail_zh === "string" ? (lang === "zh-CN" ? body.detail_zh : body.detail) : null;
  }

  function detailOf(body) {
    if (!body) return "";
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map(function (d) { return d.msg; }).join("; ");
    return "";
  }

  // For a view that loads again while an earlier load is on its way (a filter submitted, an action's refresh, the
  // tab shown twice): ``const fresh = latestOnly()`` once, then per load ``const only = fresh()`` and
  // ``api(…).then(only(show), only(fail))`` — the answers of a load overtaken by a newer one are dropped.
  function latestOnly() {
    let generation = 0;
    return function () {
      const mine = ++generation;
      return function (handle) {
        return function (value) { return mine === generation ? handle(value) : undefined; };
      };
    };
  }

  // fetch with the login token; 401 asks for a login and rejects, so a view shows its note.
  function api(method, path, body, options) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method: method, headers: headers };
    if (options && options.form) {
      init.body = new URLSearchParams(body);
      headers["Content-Type"] = "application/x-www-form-urlencoded";
    } else if (body !== undefined && body !== null) {
      init.body = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    const url = path.charAt(0) === "/" ? path.slice(1) : path; // relative: works behind a path prefix
    return window.fetch(url, init).then(function (response) {
      const json = (response.headers.get("content-type") || "").indexOf("json") >= 0;
      return (json ? response.json().catch(function () { return null; }) : Promise.resolve(null))
        .then(function (data) {
          if (response.status === 401 && !(options && options.noLogin)) needLogin("login.expired");
          if (!response.ok) throw new ApiError(response.status, detailOf(data), translatedDetail(data));
          return data;
        });
    });
  }

  let openApiLocked = false; // the server shows its OpenAPI to logged-in callers only

  // The login token as a request header, for components that make their own requests (the API docs).
  function authHeader() {
    return token ? { Authorization: "Bearer " + token } : {};
  }

  // A request that ends the current token and answers with a new one (changing one's password): the live socket
  // is let go first, so the server closing it for the old token is not taken for a lapsed login, then reopened.
  function renewToken(request) {
    const old = socket;
    socket = null;
    if (old) {
      old.onclose = null;
      old.onmessage = null;
      old.onerror = null;
      old.close();
    }
    return request().then(function (data) {
      token = data.access_token;
      storageSet("sessionStorage", TOKEN_KEY, token);
      connect();
      return data;
    }, function (err) {
      connect();
      throw err;
    });
  }

  // A file from the API saved by the browser: fetched with the login token (a plain link cannot send it).
  function download(path, filename) {
    const url = path.charAt(0) === "/" ? path.slice(1) : path;
    return window.fetch(url, { headers: token ? { Authorization: "Bearer " + token } : {} }).then(function (r) {
      if (!r.ok) throw new ApiError(r.status, r.statusText);
      return r.blob();
    }).then(function (blob) {
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = filename;
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(function () { URL.revokeObjectURL(link.href); }, 10000);
    });
  }

  // An image or file from the API as a blob: URL the page can use (fetched with the login token).
  function fetchBlob(path) {
    const url = path.charAt(0) === "/" ? path.slice(1) : path;
    return window.fetch(url, { headers: token ? { Authorization: "Bearer " + token } : {} }).then(function (r) {
      if (!r.ok) throw new ApiError(r.status, r.statusText);
      return r.blob();
    }).then(function (blob) { return URL.createObjectURL(blob); });
  }

  function loadOpenApi() {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    return window.fetch("openapi.json", { headers: headers })
      .then(function (r) { openApiLocked = r.status === 401; return r.ok ? r.json() : null; })
      .catch(function () { return null; })
      .then(function (doc) {
        openapi = doc && doc.paths ? doc : null;
        paths.clear();
        if (openapi) for (const p of Object.keys(openapi.paths)) paths.add(p);
      });
  }

  // ----- login -------------------------------------------------------------------------------------
  let user = null; // {username, role, ...} when the server says who we are
  let loginWaiters = [];

  function tokenUrl() {
    const schemes = openapi && openapi.components && openapi.components.securitySchemes;
    for (const name in schemes || {}) {
      const flow = schemes[name].flows && schemes[name].flows.password;
      if (flow && flow.tokenUrl) return flow.tokenUrl;
    }
    return findPath(/\/(token|login)$/, "post") || "/api/auth/token";
  }

  function authRequired() {
    const schemes = openapi && openapi.components && openapi.components.securitySchemes;
    return Boolean(schemes && Object.keys(schemes).length);
  }

  function needLogin(messageKey) {
    token = null;
    storageSet("sessionStorage", TOKEN_KEY, null);
    const overlay = document.getElementById("login");
    const error = document.getElementById("login-error");
    if (messageKey) {
      error.hidden = false;
      setText(error, t(messageKey));
    }
    if (overlay.hidden) {
      overlay.hidden = false;
      document.getElementById("login-user").focus();
    }
    return new Promise(function (resolve) { loginWaiters.push(resolve); });
  }

  function submitLogin(event) {
    event.preventDefault();
    unlockAudio(); // the login click is the user gesture browsers want before sound
    const form = event.target;
    const error = document.getElementById("login-error");
    const body = { username: form.username.value, password: form.password.value, grant_type: "password" };
    api("POST", tokenUrl(), body, { form: true, noLogin: true })
      .then(function (data) {
        token = data.access_token;
        storageSet("sessionStorage", TOKEN_KEY, token);
        form.password.value = "";
        error.hidden = true;
        document.getElementById("login").hidden = true;
        if (started) {
          window.location.reload(); // a login after an expired token: start again with the new one
          return;
        }
        const waiters = loginWaiters;
        loginWaiters = [];
        for (const resolve of waiters) resolve();
      })
      .catch(function (err) {
        error.hidden = false;
        setText(error, t(err.status === 429 ? "login.limited" : "login.failed") +
          (err.status && err.status !== 401 && err.status !== 400 && err.status !== 429 ? " (" + err.message + ")" : ""));
      });
  }

  function loadUser() {
    const path = findPath(/\/(auth\/)?(me|whoami|users\/me)$/, "get");
    if (!path || !token) {
      user = null;
      return Promise.resolve(null);
    }
    return api("GET", path).then(function (data) {
      user = data;
      return data;
    }).catch(function () {
      user = null;
      return null;
    });
  }

  function showUser() {
    const box = document.getElementById("user");
    box.hidden = !token;
    const name = user ? (user.display_name || user.name || user.username || "") : "";
    const role = user && user.role ? t("role." + user.role, user.role) : "";
    const node = document.getElementById("user-name");
    setText(node, name);
    node.title = [name, role, user ? user.login : ""].filter(Boolean).join(" · ");
    document.getElementById("logout").title = node.title; // who is logged in, where the name has no room
  }

  function logout() {
    const path = findPath(/\/logout$/, "post");
    const done = function () {
      token = null;
      storageSet("sessionStorage", TOKEN_KEY, null);
      window.location.reload();
    };
    if (path && token) api("POST", path, {}, { noLogin: true }).then(done, done);
    else done();
  }

  // ----- shared state: park tree, readings, alarms -------------------------------------------------
  let tree = null; // /api/sources
  const sensors = new Map(); // sensor id -> entry
  const sourceInfo = new Map(); // hazard source id -> {source, enterprise}
  const alarms = new Map(); // occurrence id -> alarm (shown in the active or the shelved list)
  let serverOffsetMs = 0; // server clock minus browser clock, from the snapshot

  function serverNow() {
    return Date.now() + serverOffsetMs;
  }

  function indexTree(data) {
    tree = data;
    sensors.clear();
    sourceInfo.clear();
    for (const ent of tree.enterprises) {
      for (const src of ent.hazard_sources) {
        sourceInfo.set(src.id, { source: src, enterprise: ent });
        const add = function (info, tank) {
          sensors.set(info.id, {
            info: info, sourceId: src.id, enterpriseId: ent.id, tank: tank || null,
            reading: null, alarmCount: 0, faultCount: 0, status: null, views: [],
          });
        };
        for (const tank of src.tanks) for (const s of tank.sensors) add(s, tank);
        for (const s of src.sensors) add(s, null);
      }
    }
    for (const a of alarms.values()) countAlarm(a, 1);
  }

  // ----- liveness: a value is live only while the page is connected and younger than its sensor's staleness
  // limit (stale_after_s from /api/sources: the sensor's comm-loss time); what is not live is shown as such.
  let connected = false;
  let downSince = null; // browser time the live connection was lost (null while live, or before it ever was)
  let everLive = false;
  let lastMessageAt = 0;
  const SILENT_AFTER_MS = 15000; // the server sends a heartbeat every 5 s: silence this long is a dead link

  function staleAfterMs(entry) {
    const info = entry.info;
    return 1000 * (typeof info.stale_after_s === "number" ? info.stale_after_s : 5 * info.expected_period_s);
  }

  function ageMs(entry) {
    return entry.reading ? Math.max(0, serverNow() - entry.reading.ts_ms) : null;
  }

  function isLive(entry) {
    return connected && entry.reading !== null && ageMs(entry) <= staleAfterMs(entry);
  }

  // Status of one sensor: alarm (red) beats fault (yellow) beats stale (grey: not live) beats normal (green).
  function sensorStatus(entry) {
    if (entry.alarmCount > 0) return "alarm";
    const r = entry.reading;
    if (!connected) return r ? "stale" : "nodata";
    if (entry.faultCount > 0) return "fault";
    if (!r) return "nodata";
    if (r.quality !== "good") return "fault";
    return isLive(entry) ? "normal" : "stale";
  }

  const STATUS_RANK = { nodata: 0, normal: 1, stale: 2, fault: 3, alarm: 4 };

  // What is wrong with a value, when something is: the data-quality alarm or the reading's quality (comm-fail,
  // flat-line, stale… told apart, never one "fault"), and how old it is when it is not live.
  function qualityText(entry) {
    const r = entry.reading;
    const parts = [];
    if (entry.faultCount > 0 && entry.faultCondition) {
      parts.push(t("cond." + entry.faultCondition.toLowerCase(), entry.faultCondition));
    } else if (!r) {
      return t("status.nodata");
    } else if (r.quality !== "good") {
      parts.push(t("quality." + r.quality, r.quality));
    }
    if (r && !isLive(entry)) {
      if (!parts.length) parts.push(t(connected ? "quality.stale" : "status.stale"));
      parts.push(tf("quality.age", { age: formatAge(ageMs(entry)) }));
    }
    return parts.join(" · ");
  }

  const dirty = new Set();
  let renderQueued = false;

  function markDirty(sensorId) {
    if (!sensors.has(sensorId)) return;
    dirty.add(sensorId);
    if (!renderQueued) {
      renderQueued = true;
      window.requestAnimationFrame(render);
    }
  }

  function render() {
    renderQueued = false;
    const touched = new Set();
    for (const id of dirty) {
      const entry = sensors.get(id);
      if (!entry) continue;
      const status = sensorStatus(entry);
      entry.status = status;
      for (const view of entry.views) view(status);
      touched.add(entry.sourceId);
    }
    dirty.clear();
    emit("rendered", touched);
    renderSummary();
  }

  function renderSummary() {
    let alarmsN = 0;
    let faults = 0;
    let stale = 0;
    let normal = 0;
    for (const entry of sensors.values()) {
      if (entry.status === "alarm") alarmsN += 1;
      else if (entry.status === "fault") faults += 1;
      else if (entry.status === "stale") stale += 1;
      else if (entry.status === "normal") normal += 1;
    }
    setText(document.getElementById("sum-alarms"), String(alarmsN));
    setText(document.getElementById("sum-faults"), String(faults));
    setText(document.getElementById("sum-stale"), String(stale));
    document.getElementById("sum-stale-pill").hidden = stale === 0;
    setText(document.getElementById("sum-normal"), String(normal));
  }

  function applyRows(rows) {
    for (const row of rows) {
      const entry = sensors.get(row[0]);
      if (!entry) continue;
      if (entry.reading && entry.reading.ts_ms > row[1]) continue; // never step back in time
      entry.reading = { ts_ms: row[1], value: row[2], quality: row[3] };
      markDirty(row[0]);
    }
    emit("readings", rows);
  }

  // ----- alarms: the ISA-18.2 lifecycle as the page shows it ---------------------------------------
  const PRIORITY_RANK = { highest: 0, emergency: 0, critical: 0, urgent: 0, high: 1, medium: 2, low: 3, diagnostic: 4 };
  function priorityRank(p) {
    return p in PRIORITY_RANK ? PRIORITY_RANK[p] : 5;
  }
  function isLoud(priority) {
    return priorityRank(priority) <= 1;
  }

  // Data-quality alarms make a sensor yellow (fault); process and gas alarms make it red.
  const FAULT_CONDITIONS = /^(dq|stale|comm|comm-fail|comm_loss|bad|out-of-range|sensor_fault|flat|flatline)$/i;
  // Gas alarms latch until reset (GB/T 50493-2019).
  const LATCHING = /^(gas1|gas2|first|second)$/i;

  function isFault(a) {
    return FAULT_CONDITIONS.test(String(a.condition));
  }

  function countAlarm(a, delta) {
    if (a.state === "shelved") return; // shelved alarms do not colour the mimic
    const entry = sensors.get(a.sensor_id);
    if (!entry) return;
    if (isFault(a)) {
      entry.faultCount = Math.max(0, entry.faultCount + delta);
      entry.faultCondition = delta > 0 ? String(a.condition) : entry.faultCount ? entry.faultCondition : null;
    } else {
      entry.alarmCount = Math.max(0, entry.alarmCount + delta);
    }
    markDirty(a.sensor_id);
  }

  function putAlarm(a) {
    const old = alarms.get(a.occurrence_id);
    if (old) countAlarm(old, -1);
    alarms.set(a.occurrence_id, a);
    countAlarm(a, 1);
  }

  function dropAlarm(occurrenceId) {
    const old = alarms.get(occurrenceId);
    if (!old) return;
    alarms.delete(occurrenceId);
    countAlarm(old, -1);
    annunciator.forget(occurrenceId);
  }

  function update(occurrenceId, changes) {
    const old = alarms.get(occurrenceId);
    if (old) putAlarm(Object.assign({}, old, changes));
  }

  // A stored occurrence row as the page keeps it; unknown states stay visible rather than vanish.
  function normalizeAlarm(row) {
    const a = Object.assign({}, row);
    // ISA-18.2 states of the alarm core (tankwatch/lifecycle.py) folded into what the list needs
    const state = String(a.lifecycle || a.state || "active").toLowerCase();
    const folded = { unack_active: "active", ack_active: "active", unack_returned: "cleared", returned: "cleared",
      out_of_service: "suppressed" };
    a.state = folded[state] || state;
    if (state === "ack_active") a.acknowledged = true;
    if (a.shelved || a.shelved_until_ms) a.state = "shelved";
    a.acknowledged = Boolean(a.acknowledged);
    return a;
  }

  function keepInList(a) {
    if (a.state === "active" || a.state === "latched" || a.state === "shelved") return true;
    if (a.state === "cleared") return !a.acknowledged; // returned but unacknowledged stays until acknowledged
    return false;
  }

  function resetAlarms(list) {
    for (const id of Array.from(alarms.keys())) dropAlarm(id);
    for (const row of list) {
      const a = normalizeAlarm(row);
      if (keepInList(a)) putAlarm(a);
    }
  }

  // One alarm transition: what the lists show after it; `live` is false while replaying a snapshot.
  function applyEvent(e, live) {
    const existing = alarms.get(e.occurrence_id);
    switch (e.action) {
      case "raised":
      case "realarmed":
        if (existing && !live) return; // the stored row already reflects later acknowledgements
        putAlarm({
          occurrence_id: e.occurrence_id,
          sensor_id: e.sensor_id,
          condition: e.condition,
          priority: e.priority,
          enterprise_id: e.enterprise_id,
          source_id: e.source_id,
          state: "active",
          acknowledged: false,
          raised_ms: existing ? existing.raised_ms : e.ts_ms,
          value: e.value,
          limit: e.limit,
          note: e.note,
          live: Boolean(live),
        });
        if (live && isLoud(e.priority)) annunciator.add(e);
        break;
      case "unshelved":
      case "unsuppressed":
        if (existing) update(e.occurrence_id, { state: "active" });
        else if (live) applyEvent(Object.assign({}, e, { action: "raised" }), live);
        break;
      case "acknowledged":
        annunciator.forget(e.occurrence_id);
        if (!existing) break;
        if (existing.state === "cleared") dropAlarm(e.occurrence_id);
        else update(e.occurrence_id, { acknowledged: true, acked_by: e.user });
        break;
      case "cleared":
        if (!existing) break;
        if (e.note === "latched") update(e.occurrence_id, { state: "latched", cleared_ms: e.ts_ms });
        else if (existing.acknowledged || existing.state === "shelved") dropAlarm(e.occurrence_id);
        else update(e.occurrence_id, { state: "cleared", cleared_ms: e.ts_ms });
        break;
      case "reset":
      case "suppressed":
        dropAlarm(e.occurrence_id);
        break;
      case "shelved":
        annunciator.forget(e.occurrence_id);
        if (existing) update(e.occurrence_id, { state: "shelved", shelve_note: e.note, shelved_by: e.user });
        break;
      case "commented":
        if (existing) update(e.occurrence_id, { comment: e.note, commented_by: e.user });
        break;
      case "escalated":
        if (existing) update(e.occurrence_id, { escalated: true });
        break;
      default:
        break;
    }
  }

  // ----- audible annunciation ----------------------------------------------------------------------
  // A two-tone chime repeats while any new critical/high alarm is unacknowledged, unless muted or
  // silenced. window.tankwatch.audio.state says what the page is doing, so tests and people can see it.
  const annunciator = (function () {
    const pending = new Map(); // occurrence id -> event that asked for sound
    const state = { sounding: false, muted: storageGet("localStorage", MUTE_KEY) === "1", pending: 0,
      beeps: 0, context: "none", lastOccurrence: null };
    let ctx = null;
    let timer = null;

    function context() {
      if (!ctx) {
        const Ctor = window.AudioContext || window.webkitAudioContext;
        if (!Ctor) return null;
        ctx = new Ctor();
      }
      return ctx;
    }

    function beep() {
      const c = context();
      state.context = c ? c.state : "none";
      if (!c || c.state !== "running") {
        document.getElementById("audio-blocked").hidden = !c || state.muted;
        if (c) c.resume().catch(function () {});
        return;
      }
      document.getElementById("audio-blocked").hidden = true;
      const now = c.currentTime;
      [[880, 0], [660, 0.3]].forEach(function (tone) {
        const osc = c.createOscillator();
        const gain = c.createGain();
        osc.type = "square";
        osc.frequency.value = tone[0];
        gain.gain.setValueAtTime(0.0001, now + tone[1]);
        gain.gain.exponentialRampToValueAtTime(0.2, now + tone[1] + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, now + tone[1] + 0.25);
        osc.connect(gain).connect(c.destination);
        osc.start(now + tone[1]);
        osc.stop(now + tone[1] + 0.27);
      });
      state.beeps += 1;
    }

    function refresh() {
      state.pending = pending.size;
      const want = pending.size > 0 && !state.muted;
      if (want && !timer) {
        beep();
        timer = window.setInterval(beep, 1500);
      } else if (!want && timer) {
        window.clearInterval(timer);
        timer = null;
      }
      state.sounding = want;
      const mute = document.getElementById("mute");
      mute.setAttribute("aria-pressed", state.muted ? "true" : "false");
      mute.setAttribute("data-i18n", state.muted ? "audio.muted" : "audio.on");
      setText(mute, t(state.muted ? "audio.muted" : "audio.on"));
      if (!want) document.getElementById("audio-blocked").hidden = true;
      emit("audio", state);
    }

    return {
      state: state,
      add: function (e) {
        pending.set(e.occurrence_id, e);
        state.lastOccurrence = e.occurrence_id;
        refresh();
      },
      forget: function (occurrenceId) {
        if (pending.delete(occurrenceId)) refresh();
      },
      silence: function () {
        pending.clear();
        refresh();
      },
      toggleMute: function () {
        state.muted = !state.muted;
        storageSet("localStorage", MUTE_KEY, state.muted ? "1" : null);
        refresh();
      },
      unlock: function () {
        const c = context();
        if (c && c.state !== "running") c.resume().catch(function () {});
        state.context = c ? c.state : "none";
      },
      pendingIds: function () {
        return Array.from(pending.keys());
      },
      refresh: refresh,
    };
  })();

  function unlockAudio() {
    annunciator.unlock();
  }

  // ----- websocket ---------------------------------------------------------------------------------
  let socket = null;
  let retryMs = 1000;
  let liveMessages = 0;
  let firstSnapshot = false;

  function setConnection(state) {
    const node = document.getElementById("conn");
    setAttr(node, "data-state", state);
    const key = state === "live" ? "conn.live" : state === "down" ? "conn.down" : "conn.connecting";
    const text = document.getElementById("conn-text");
    text.setAttribute("data-i18n", key);
    setText(text, t(key));
    const was = connected;
    connected = state === "live";
    if (connected) {
      everLive = true;
      downSince = null;
    } else if (everLive && downSince === null) {
      downSince = lastMessageAt || Date.now(); // the page has had nothing live since its last message
    }
    document.body.setAttribute("data-live", connected ? "1" : "0");
    renderLiveBanner();
    if (was !== connected) {
      for (const id of sensors.keys()) markDirty(id);
      emit("connection", connected);
    }
  }

  // Since when the page is not live: greyed values alone are easy to miss on a wall screen.
  function renderLiveBanner() {
    const banner = document.getElementById("live-banner");
    banner.hidden = downSince === null;
    if (downSince !== null) {
      setText(document.getElementById("live-banner-text"), tf("live.banner", {
        since: formatClock(new Date(downSince + serverOffsetMs)), age: formatAge(Date.now() - downSince) }));
    }
  }

  // A socket that stays open while nothing arrives (a dead server behind a live proxy, a cut cable) is down.
  function watchSilence() {
    if (!socket || !connected || Date.now() - lastMessageAt <= SILENT_AFTER_MS) return;
    const dead = socket;
    socket = null;
    dead.onclose = null;
    dead.onmessage = null;
    dead.onerror = null;
    dead.close();
    setConnection("down");
    window.setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 15000);
  }

  function onMessage(event) {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (_e) {
      return; // a malformed frame is ignored, the next one carries fresh state
    }
    liveMessages += 1;
    lastMessageAt = Date.now();
    if (msg.type === "snapshot") {
      if (typeof msg.ts_ms === "number") serverOffsetMs = msg.ts_ms - Date.now();
      applyRows(msg.readings || []);
      resetAlarms(msg.alarms || []);
      for (const e of msg.events || []) applyEvent(e, false);
      emit("alarms", { snapshot: true });
      if (!firstSnapshot) {
        firstSnapshot = true;
        // When the page first showed live data: measured by bench/dashboard_perf.py, cheap for everyone else.
        window.requestAnimationFrame(function () { performance.mark("tankwatch:first-snapshot"); });
      }
    } else if (msg.type === "readings") {
      applyRows(msg.rows || []);
    } else if (msg.type === "events") {
      for (const e of msg.events || []) applyEvent(e, true);
      emit("alarms", { events: msg.events || [] });
    } else if (msg.type === "heartbeat") {
      // nothing changed, and the server is there
    } else {
      emit("message", msg); // grades, escalations… whatever the server adds later
    }
  }

  // The token goes in the query (browsers cannot set headers on a websocket) and as the first message.
  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const base = window.location.pathname.replace(/[^/]*$/, "");
    const query = token ? "?token=" + encodeURIComponent(token) : "";
    setConnection("connecting");
    socket = new WebSocket(scheme + window.location.host + base + "ws/live" + query);
    socket.onopen = function () {
      retryMs = 1000;
      lastMessageAt = Date.now();
      setConnection("live");
    };
    socket.onmessage = onMessage;
    socket.onclose = function (event) {
      setConnection("down");
      if (event.code === 4401 || event.code === 1008) {
        needLogin("login.expired").then(connect);
        return;
      }
      window.setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    };
    socket.onerror = function () {
      socket.close();
    };
  }

  // ----- alarm operations (engineer A's routes), one place for every view --------------------------
  function alarmAction(occurrenceId, action, body) {
    return api("POST", "/api/alarms/" + encodeURIComponent(occurrenceId) + "/" + action, body || {});
  }

  // Roles that act on alarms (the enterprise's people); regulators sign escalations, testers and admins look.
  const ALARM_ROLES = ["operator", "safety_manager"];
  const REPLAY_ROLES = ["tester", "admin"];

  function hasRole(roles) {
    return Boolean(user) && roles.indexOf(String(user.role)) >= 0;
  }

  // Whether this user may do an alarm action here: the route exists and the role may use it.
  function canAct(action) {
    return hasRole(ALARM_ROLES) && has("/api/alarms/{occurrence_id}/" + action, "post");
  }

  // ----- a small dialog for the actions that need words (shelve reason, comment, disposition…) -----
  function ask(options) {
    // options: {title, sub, fields: [{name, labelKey, type, value, options:[[value,label]], required}]}
    const overlay = document.getElementById("action-dialog");
    const form = document.getElementById("action-form");
    const fields = document.getElementById("action-fields");
    const error = document.getElementById("action-error");
    setText(document.getElementById("action-title"), options.title);
    setText(document.getElementById("action-sub"), options.sub || "");
    error.hidden = true;
    fields.replaceChildren();
    const inputs = {};
    for (const f of options.fields) {
      const label = el("label");
      label.append(el("span", null, t(f.labelKey)));
      let input;
      if (f.options) {
        input = el("select");
        for (const opt of f.options) {
          const o = el("option", null, opt[1]);
          o.value = opt[0];
          input.append(o);
        }
      } else if (f.type === "textarea") {
        input = el("textarea");
        input.rows = 3;
      } else {
        input = el("input");
        input.type = f.type || "text";
        if (f.autocomplete) input.setAttribute("autocomplete", f.autocomplete);
        if (f.min !== undefined) input.min = f.min;
        if (f.max !== undefined) input.max = f.max;
      }
      input.name = f.name;
      if (f.value !== undefined) input.value = f.value;
      if (f.required) input.required = true;
      label.append(input);
      fields.append(label);
      inputs[f.name] = input;
    }
    overlay.hidden = false;
    const first = fields.querySelector("input,select,textarea");
    if (first) first.focus();
    return new Promise(function (resolve) {
      function finish(values) {
        overlay.hidden = true;
        form.onsubmit = null;
        document.getElementById("action-cancel").onclick = null;
        resolve(values);
      }
      form.onsubmit = function (event) {
        event.preventDefault();
        const values = {};
        for (const name in inputs) values[name] = inputs[name].value;
        if (options.submit) {
          options.submit(values).then(function () { finish(values); }, function (err) {
            error.hidden = false;
            setText(error, t("act.failed") + ": " + err.message);
          });
        } else {
          finish(values);
        }
      };
      document.getElementById("action-cancel").onclick = function () { finish(null); };
    });
  }

  // ----- views and routing -------------------------------------------------------------------------
  const views = {};
  let currentView = null;

  function route() {
    const hash = window.location.hash.replace(/^#\/?/, "");
    const parts = hash.split("/").filter(Boolean);
    const name = views[parts[0]] ? parts[0] : defaultView();
    if (currentView !== name) {
      if (currentView && views[currentView].hide) views[currentView].hide();
      currentView = name;
    }
    for (const node of document.querySelectorAll("main.view")) node.hidden = node.getAttribute("data-view") !== name;
    for (const a of document.querySelectorAll("#tabs a")) {
      a.setAttribute("aria-current", a.getAttribute("data-view") === name ? "page" : "false");
    }
    document.body.setAttribute("data-view", name);
    if (views[name].show) views[name].show(parts.slice(1));
  }

  function defaultView() {
    const role = user && String(user.role || "");
    if (/regulator/.test(role)) return "park";
    if (/tester/.test(role)) return "replay";
    return "control";
  }

  // ----- language and large type -------------------------------------------------------------------
  function applyStaticStrings() {
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-i18n]")) {
      setText(node, t(node.getAttribute("data-i18n")));
    }
    setText(document.getElementById("lang"), t("langButton"));
    document.title = "tankwatch · " + t("title");
  }

  function switchLanguage() {
    lang = lang === "zh-CN" ? "en" : "zh-CN";
    storageSet("localStorage", LANG_KEY, lang);
    applyStaticStrings();
    showUser();
    emit("lang", lang);
    for (const id of sensors.keys()) markDirty(id);
  }

  function applyLarge(large) {
    document.body.classList.toggle("large", large);
    document.getElementById("large").setAttribute("aria-pressed", large ? "true" : "false");
    storageSet("localStorage", LARGE_KEY, large ? "1" : null);
  }

  // ----- start -------------------------------------------------------------------------------------
  function tick() {
    const clock = formatClock(new Date(serverNow()));
    setText(document.getElementById("clock-date"), clock.slice(0, 10));
    setText(document.getElementById("clock-time"), clock.slice(11));
    watchSilence();
    renderLiveBanner();
    emit("tick", serverNow());
  }

  // Staleness depends on time passing, not only on messages: re-judge every sensor now and then.
  function recheckStale() {
    for (const id of sensors.keys()) markDirty(id);
  }

  function loadSources() {
    return api("GET", "/api/sources").then(function (data) {
      indexTree(data);
      setText(document.getElementById("park-name"), data.park.name);
      emit("tree", data);
      for (const id of sensors.keys()) markDirty(id);
    });
  }

  let started = false;

  function start() {
    started = true;
    loadSources()
      .then(function () {
        connect();
        route();
      })
      .catch(function (err) {
        if (err && err.status === 401) return; // the login form is up; start() runs again after it
        const notice = document.getElementById("sources-notice");
        if (notice) {
          notice.setAttribute("data-i18n", "loadError");
          setText(notice, t("loadError"));
        }
        window.setTimeout(start, 5000);
      });
  }

  function boot() {
    document.getElementById("lang").addEventListener("click", switchLanguage);
    document.getElementById("large").addEventListener("click", function () {
      applyLarge(!document.body.classList.contains("large"));
    });
    document.getElementById("mute").addEventListener("click", function () {
      unlockAudio();
      annunciator.toggleMute();
    });
    document.getElementById("silence").addEventListener("click", function () { annunciator.silence(); });
    document.getElementById("audio-blocked").addEventListener("click", function () {
      unlockAudio();
      annunciator.refresh();
    });
    document.getElementById("login-form").addEventListener("submit", submitLogin);
    document.getElementById("logout").addEventListener("click", logout);
    document.addEventListener("click", unlockAudio, { once: true });
    window.addEventListener("hashchange", function () { if (tree) route(); });
    applyLarge(storageGet("localStorage", LARGE_KEY) === "1" || new URLSearchParams(window.location.search).has("large"));
    applyStaticStrings();
    annunciator.refresh();
    tick();
    window.setInterval(tick, 1000);
    window.setInterval(recheckStale, 2000);
    loadOpenApi().then(function () {
      const ready = (authRequired() || openApiLocked) && !token ? needLogin().then(loadOpenApi) : Promise.resolve();
      return ready.then(loadUser).then(function () {
        showUser();
        start();
      });
    });
  }

  window.tankwatch = {
    t: t, strings: STRINGS, el: el, dataEl: dataEl, bilingualText: bilingualText, svg: svg, setText: setText, setAttr: setAttr, button: button, note: note,
    formatTime: formatTime, formatClock: formatClock, formatDuration: formatDuration, formatValue: formatValue,
    formatAge: formatAge, tf: tf, isLive: isLive,
    percent: percent, toMs: toMs, pad: pad,
    on: on, emit: emit, api: api, latestOnly: latestOnly, download: download, fetchBlob: fetchBlob, authHeader: authHeader, renewToken: renewToken, has: has, findPath: findPath, ApiError: ApiError, ask: ask,
    alarmAction: alarmAction, canAct: canAct, hasRole: hasRole, REPLAY_ROLES: REPLAY_ROLES,
    sensors: sensors, sourceInfo: sourceInfo, alarms: alarms, isFault: isFault, LATCHING: LATCHING,
    priorityRank: priorityRank, isLoud: isLoud, keepInList: keepInList, applyEvent: applyEvent,
    sensorStatus: sensorStatus, qualityText: qualityText, STATUS_RANK: STATUS_RANK, markDirty: markDirty,
    serverNow: serverNow, views: views, audio: annunciator,
    get tree() { return tree; },
    get user() { return user; },
    get lang() { return lang; },
    get liveMessages() { return liveMessages; },
    get connected() { return connected; },
    get view() { return currentView; },
  };
  document.addEventListener("DOMContentLoaded", boot);
})();
