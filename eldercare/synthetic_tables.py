"""The synthetic city's data tables (SPEC §4): the shares, names, places and rates the generator
(eldercare/synthetic.py) draws from, each with where it comes from."""

from __future__ import annotations

# ---------------------------------------------------------------- kinds of entry ----------

# How the non-60+-active entries split. Deaths dominate a registry kept for several years;
# transfers out of the city are rarer; hardship residents under 60 (severely disabled,
# extreme poverty, bereaved family-planning parents) are registered for subsidies.
EXTRA_SHARES = {"deceased": 55, "transferred": 15, "hardship_under_60": 30}


# ---------------------------------------------------------------- age pyramid -------------

# Share of the 60+ population by five-year band, % (Henan, 7th census 2020: 65+ is about
# three quarters of 60+; SPEC §4 asks 74%). 100+ at a few hundred per million elders:
# about 200 in the full city, a handful to a few dozen per county.
AGE_SHARES_60PLUS: tuple[tuple[int, float], ...] = (
    (60, 26.0), (65, 24.0), (70, 20.0), (75, 13.5), (80, 9.0), (85, 5.0), (90, 2.0),
    (95, 0.47), (100, 0.03),
)


# ---------------------------------------------------------------- people ------------------

# Surnames with rough frequencies (% of population), leaning to northern Henan where 王, 李,
# 张 and 刘 are commoner than nationally; 訾, 仝, 晁 are local to Puyang.
SURNAMES = (
    "王9.5 李8.6 张8.4 刘5.6 陈3.3 杨3.0 赵2.7 郭2.3 孙1.9 高1.8 马1.8 宋1.4 周1.4 徐1.4 朱1.3 "
    "胡1.3 韩1.2 吴1.0 郑1.0 梁1.0 黄0.9 何0.8 程0.8 冯0.9 于0.9 董0.9 曹0.9 许0.9 魏0.8 田0.7 "
    "任0.7 贾0.7 袁0.7 崔0.6 吕0.6 苏0.6 杜0.6 丁0.6 谢0.5 罗0.5 郝0.5 武0.5 孟0.5 白0.5 石0.5 "
    "史0.5 侯0.5 姚0.5 姜0.5 范0.5 彭0.4 邓0.4 蔡0.5 薛0.5 卢0.5 常0.4 牛0.4 孔0.4 康0.4 秦0.4 "
    "毛0.4 潘0.4 夏0.4 段0.4 阎0.3 闫0.3 沈0.3 申0.3 乔0.3 贺0.3 岳0.3 焦0.3 付0.3 尹0.3 邵0.3 "
    "雷0.3 方0.3 金0.2 齐0.2 邢0.2 葛0.2 路0.2 苗0.2 靳0.2 翟0.2 聂0.2 代0.2 文0.2 蒋0.3 唐0.3 "
    "戴0.2 钱0.2 汤0.2 万0.2 余0.2 江0.2 陆0.2 邹0.2 熊0.2 訾0.05 仝0.05 晁0.05 栗0.1 裴0.1 "
    "霍0.1 鲁0.1 司0.1 庞0.1 柴0.1 温0.1 穆0.1 房0.1 屈0.1 左0.1 宁0.1 郜0.05 桑0.05 娄0.05 "
    "商0.05 褚0.05 单0.05 井0.03 冉0.03"
)

# Given names typical of people born 1920-1966 (the revolution-era 建国, 援朝, 跃进 …),
# most common first; combinations of common characters widen the pool.
MALE_GIVEN = (
    "建国 国庆 建华 建军 国强 志强 德明 长海 振华 保国 春生 秋生 铁柱 金锁 满仓 有才 富贵 长林 "
    "庆祥 文华 卫东 红旗 志刚 明亮 国栋 玉林 玉山 玉田 广田 广林 学文 学礼 德胜 德福 德山 新民 "
    "新华 跃进 胜利 解放 援朝 抗美 和平 建设 宝山 宝林 书林 书田 庆林 庆丰 丰收 中华 振国 安民 "
    "永利 永福 永祥 长江 长顺 来福 来顺 进财 全福 金山 金海 银山 海军 天成 天祥 启明 俊峰 殿臣 "
    "殿元 凤山 凤岐 照林 占山 占魁 瑞林 景山 文明 文彬 守仁 守义 守信 怀德 怀礼 树森 树林 连成 "
    "连生 万里 万福 兴旺 培元 贵生 喜来 锁柱 留柱 留根 拴柱 军 强 明 华 林 斌 勇 刚 平 忠 良 成 "
    "民 福 顺 旺 山"
).split()

FEMALE_GIVEN = (
    "桂兰 秀英 玉兰 秀兰 桂英 凤英 淑珍 玉珍 秀珍 桂芝 兰英 翠兰 凤兰 玉梅 素芳 淑兰 秀荣 春梅 "
    "爱莲 月娥 金花 素珍 改云 巧云 爱荣 玉英 桂荣 秀云 秀芝 凤琴 玉芳 桂香 春花 秋菊 冬梅 雪梅 "
    "红梅 丽华 淑华 秀芳 美兰 玉凤 玉荣 彩霞 彩云 爱华 爱英 爱琴 小花 小梅 翠英 翠花 兰芝 荷花 "
    "菊花 香兰 素英 素云 素梅 俊英 凤霞 建英 国英 国华 改英 改花 改兰 粉英 金凤 银凤 秀梅 玉莲 "
    "月英 月兰 麦香 喜梅 花荣 书兰 书芳 俊芳 焕英 英 兰 芳 梅 霞 珍 琴 萍 荣 云"
).split()

MALE_CHARS = ("建国志德长振保春金有庆文学永广天明玉树守怀殿占连万兴", "国华明军林山海生成才贵祥福民强忠良喜全堂田臣元魁")

FEMALE_CHARS = ("桂秀玉凤淑兰翠素春爱月金巧改荣彩香俊粉书", "兰英珍芝梅芳荣花云琴娥霞莲香枝凤菊萍")

# Their children, born 1960-2000, are the usual emergency contacts.
YOUNG_GIVEN = (
    "伟 磊 军 勇 强 涛 鹏 杰 超 斌 亮 刚 浩 鑫 建伟 海涛 志勇 晓东 卫国 红军 俊杰 振宇 国伟 立新 "
    "向阳 东升 文杰 明辉 建涛 永强 丽 娟 静 敏 艳 红 霞 燕 芳 丽娟 红霞 晓燕 艳丽 海燕 玉洁 丽萍 "
    "秀丽 春燕 雪 婷 慧 晓丽 翠霞 莉 萍 艳红 红梅 丹"
).split()

# 11-digit mobile prefixes of the three carriers (MIIT numbering plan).
MOBILE_PREFIXES = (
    "134 135 136 137 138 139 150 151 152 157 158 159 182 183 187 188 147 178 198 "
    "130 131 132 155 156 185 186 166 176 133 153 180 181 189 177 173 199"
).split()

# Where people were first registered. Functional zones are not ID-issuing regions: their
# residents were registered under the county or district the land belonged to.
ZONE_BIRTH_REGIONS: dict[str, tuple[str, ...]] = {
    "410971": ("410902", "410928"),
    "410972": ("410928", "410902"),
    "410973": ("410902", "410928", "410922", "410923", "410927"),
}

# Elsewhere in Henan, the neighbours (Anyang's 内黄/滑县, Xinxiang's 长垣) most often.
HENAN_REGIONS = (
    "410527:6 410526:6 410522:3 410523:2 410500:2 410728:3 410727:2 410700:2 410100:3 410102:1 "
    "410105:1 410200:1 410221:1 410300:1 410400:1 410600:1 410800:1 411000:1 411100:1 411300:1 "
    "411400:1 411421:1 411500:1 411600:1 411700:1"
)

# Other provinces: across-the-river Shandong (聊城莘县/阳谷, 菏泽鄄城/东明) and Hebei (邯郸大名/魏县)
# first, then the cities elders commonly came from or worked in.
OTHER_REGIONS = (
    "371522:5 371521:4 371526:2 371500:2 371726:3 371728:3 371700:2 370100:2 130425:4 130434:3 "
    "130400:3 130100:1 340100:1 320300:1 140100:1 140400:1 610100:1 230100:1 210100:1 420100:1 "
    "110105:1 120101:1 620100:1 650100:1"
)


# ---------------------------------------------------------------- places ------------------

VILLAGE_SUFFIXES = "庄庄庄庄楼楼寨寨营屯集店庙岗堤湾固桥园坡寺口堂"
VILLAGE_PREFIXES = "前后东西南北大小新老"

VILLAGE_WORDS = (
    "辛庄 高寺 红庙 三里店 双碾 枣林 柳园 白堽 马庄桥 沙窝 油坊 铁炉 苏堤 枣园 孟楼 土城 丁寨 安乐 "
    "黄河 金堤 五星 八里庄 十字坡 后坡 杏园 槐树庄"
).split()

COMMUNITY_STEMS = (
    "建设 人民 胜利 中原 长庆 绿城 昆吾 开州 帝丘 龙城 华龙 春晖 阳光 和谐 幸福 锦华 颐和 铁路 "
    "油田 石化 振兴 文化 朝阳 金堤 东关 西关 南关 北关 新华 育才 安居 龙湖 卫都 京开 紫荆 世纪 "
    "民生 迎宾 光明 濮水 澶州 顺河 天然 丰华 盛世 惠民 健康 花园"
).split()


# ---------------------------------------------------------------- shares by age -----------

# GB/T 42195-2022 levels 0-4. Mostly intact or mild; disability climbs steeply past 80
# (China's 4th survey of the urban and rural elderly, 2015: about one in six partly or
# wholly disabled, here levels 2-4).
ABILITY = ((60, (0.82, 0.13, 0.03, 0.015, 0.005)), (70, (0.70, 0.21, 0.05, 0.028, 0.012)),
           (80, (0.45, 0.33, 0.12, 0.065, 0.035)), (90, (0.22, 0.35, 0.20, 0.13, 0.10)),
           (100, (0.10, 0.30, 0.25, 0.18, 0.17)))

# alone / empty-nest / with family / institution: empty-nest couples dominate the young-old,
# widowhood then moves people to living alone and, past 90, in with children.
LIVING = ((60, (0.07, 0.53, 0.39, 0.008)), (70, (0.11, 0.49, 0.385, 0.012)),
          (80, (0.19, 0.33, 0.45, 0.03)), (90, (0.18, 0.14, 0.62, 0.06)),
          (100, (0.12, 0.05, 0.75, 0.08)))

LIVING_CODES = ("alone", "empty_nest", "with_family", "institution")

# Share of men: about equal at 60, then falling as women outlive men (about 47% of all 60+).
MALE = ((60, (0.505,)), (70, (0.485,)), (80, (0.44,)), (90, (0.33,)), (100, (0.20,)))

# Phone of their own: most young-old carry a mobile, the oldest often do not.
PHONE = ((60, (0.85,)), (70, (0.75,)), (80, (0.52,)), (90, (0.35,)), (100, (0.25,)))
